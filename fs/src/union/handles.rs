//! Open file and directory handles.

use crate::types::Layer;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// An open regular file: the branch file it reads and writes.
#[derive(Debug)]
pub struct OpenFile {
    /// The branch file.
    pub file: File,
    /// Node it belongs to.
    pub ino: u64,
    /// Branch the file is open in.
    pub layer: Layer,
    /// Opened for writing.
    pub writable: bool,
    /// The shared state when the file is a block-level delta.
    pub delta: Option<std::sync::Arc<crate::delta::file::DeltaFile>>,
    /// The bytes moved away from `file` (a copy-up or a new delta since this read-only
    /// handle was opened): reads follow `moved`, as they do on overlayfs.
    pub stale: std::sync::atomic::AtomicBool,
    /// Where reads go once `stale` is set (opened on first use).
    pub moved: Mutex<Option<Arc<OpenFile>>>,
}

impl OpenFile {
    /// A handle on `file` for node `ino`.
    pub fn new(
        file: File,
        ino: u64,
        layer: Layer,
        writable: bool,
        delta: Option<Arc<crate::delta::file::DeltaFile>>,
    ) -> OpenFile {
        OpenFile {
            file,
            ino,
            layer,
            writable,
            delta,
            stale: std::sync::atomic::AtomicBool::new(false),
            moved: Mutex::new(None),
        }
    }

    /// The delta behind this handle, unless the file is (or became) whole.
    pub fn live_delta(&self) -> Option<&crate::delta::file::DeltaFile> {
        self.delta.as_deref().filter(|d| !d.is_whole())
    }
}

/// One merged directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Entry name.
    pub name: OsString,
    /// S_IFMT bits.
    pub kind: u32,
    /// Reported inode number (equals what stat reports).
    pub ino: u64,
    /// While the strata record of the entry is unread (an upper entry copied up, or a
    /// pushed-down upper's entry in a lower branch, reports the number its record keeps),
    /// the branch holding it, and `ino` is the branch's own number. A readdirplus reply
    /// looks each entry up and never needs it; nor does an emptiness check.
    pub unread: Option<Layer>,
}

/// An open directory: a snapshot of the merged listing, taken at the first read.
#[derive(Debug)]
pub struct OpenDir {
    /// Node it belongs to.
    pub ino: u64,
    /// The listing, filled when a read starts at offset 0.
    pub entries: Mutex<Option<Arc<Vec<DirEntry>>>>,
    /// The branch directory it was opened on (O_PATH), so that fstat still answers once
    /// the directory is removed or replaced (see `ops_extra.rs`).
    pub keep: Option<Arc<OwnedFd>>,
}

/// All handles, by FUSE file handle number.
#[derive(Debug, Default)]
pub struct Handles {
    files: RwLock<HashMap<u64, Arc<OpenFile>>>,
    dirs: RwLock<HashMap<u64, Arc<OpenDir>>>,
    next: AtomicU64,
}

impl Handles {
    fn fresh(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Register an open file; returns its handle number.
    pub fn add_file(&self, f: OpenFile) -> u64 {
        let fh = self.fresh();
        self.files.write().insert(fh, Arc::new(f));
        fh
    }

    /// The open file behind `fh`.
    pub fn file(&self, fh: u64) -> Option<Arc<OpenFile>> {
        self.files.read().get(&fh).cloned()
    }

    /// Forget `fh`; the branch file closes when the last request using it is done.
    pub fn remove_file(&self, fh: u64) -> Option<Arc<OpenFile>> {
        self.files.write().remove(&fh)
    }

    /// Any open file of node `ino` (for attributes of unlinked-but-open files).
    pub fn any_file_of(&self, ino: u64) -> Option<Arc<OpenFile>> {
        self.files.read().values().find(|f| f.ino == ino).cloned()
    }

    /// Whether node `ino` has a handle open for writing.
    pub fn has_writer(&self, ino: u64) -> bool {
        self.files
            .read()
            .values()
            .any(|f| f.ino == ino && f.writable)
    }

    /// The data of node `ino` moved (copy-up, new delta): point its read-only handles
    /// that still read the old place at the new one.
    pub fn mark_moved(&self, ino: u64) {
        for f in self.files.read().values() {
            if f.ino == ino && !f.writable && f.delta.is_none() {
                f.stale.store(true, Ordering::Release);
            }
        }
    }

    /// Register an open directory, holding `keep` (its branch directory) while it is open.
    pub fn add_dir(&self, ino: u64, keep: Option<Arc<OwnedFd>>) -> u64 {
        let fh = self.fresh();
        self.dirs.write().insert(
            fh,
            Arc::new(OpenDir {
                ino,
                entries: Mutex::new(None),
                keep,
            }),
        );
        fh
    }

    /// Any open directory handle of node `ino` that holds its branch directory.
    pub fn any_dir_of(&self, ino: u64) -> Option<Arc<OwnedFd>> {
        self.dirs
            .read()
            .values()
            .find(|d| d.ino == ino && d.keep.is_some())
            .and_then(|d| d.keep.clone())
    }

    /// The open directory behind `fh`.
    pub fn dir(&self, fh: u64) -> Option<Arc<OpenDir>> {
        self.dirs.read().get(&fh).cloned()
    }

    /// Forget a directory handle.
    pub fn remove_dir(&self, fh: u64) {
        self.dirs.write().remove(&fh);
    }
}
