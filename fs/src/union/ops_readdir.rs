//! Directory handles: opendir, readdir (the merged listing, dirmerge.rs), releasedir, fsyncdir.

use crate::types::errno;
use crate::union::fs::Union;
use crate::union::handles::DirEntry;
use crate::union::inode::ROOT;
use nix::fcntl::OFlag;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::sync::Arc;

impl Union {
    /// Open a directory.
    pub fn opendir(&self, ino: u64) -> io::Result<u64> {
        self.opendir_cached(ino).map(|(fh, _)| fh)
    }

    /// Open a directory; also whether the kernel may keep its listing across opens
    /// (FOPEN_CACHE_DIR): every change of its contents goes through this mount, which the
    /// kernel sees (it drops a directory's cached listing on create, unlink and rename
    /// inside), so only atime could differ: a lower directory's never changes, an upper
    /// one's only when reads of directories leave it alone (noatime, nodiratime).
    pub fn opendir_cached(&self, ino: u64) -> io::Result<(u64, bool)> {
        let (path, place) = self.node_info(ino)?;
        if !place.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        let keep = self.dir_keep_fd(&path, &place);
        let cache = !(place.upper && self.upper.is_some()) || self.atime.dirs_never();
        Ok((self.handles.add_dir(ino, keep), cache))
    }

    /// Entries of an open directory from position `offset` on, with "." and "..".
    /// Positions: 0 is ".", 1 is "..", n+2 is entry n; each entry's offset is its position+1.
    /// With `plus` (readdirplus, which looks every entry up) the records of lower entries
    /// are left unread.
    pub fn readdir(
        &self,
        fh: u64,
        offset: u64,
        plus: bool,
    ) -> io::Result<(Arc<Vec<DirEntry>>, u64)> {
        let d = self.handles.dir(fh).ok_or_else(|| errno(libc::EBADF))?;
        let mut guard = d.entries.lock();
        let entries = match (&*guard, offset) {
            (Some(e), o) if o > 0 => e.clone(),
            _ => {
                let ino = d.ino;
                let (path, place) = self.node_info(ino)?;
                let parent = if ino == ROOT {
                    ROOT
                } else {
                    self.nodes
                        .read()
                        .get(ino)
                        .and_then(|n| n.aliases.first().map(|a| a.0))
                        .unwrap_or(ROOT)
                };
                let mut v = vec![
                    DirEntry {
                        name: OsString::from("."),
                        kind: libc::S_IFDIR,
                        ino,
                        unread: None,
                    },
                    DirEntry {
                        name: OsString::from(".."),
                        kind: libc::S_IFDIR,
                        ino: parent,
                        unread: None,
                    },
                ];
                v.extend(self.list_dir(&path, &place)?);
                let e = Arc::new(v);
                *guard = Some(e.clone());
                e
            }
        };
        if !plus && entries.iter().any(|e| e.unread.is_some()) {
            let mut v = entries.as_ref().clone();
            self.read_listed_records(d.ino, &mut v)?;
            let e = Arc::new(v);
            *guard = Some(e.clone());
            return Ok((e, offset));
        }
        Ok((entries, offset))
    }

    /// Close a directory handle.
    pub fn releasedir(&self, fh: u64) {
        self.handles.remove_dir(fh);
    }

    /// fsync a directory (the upper copy, if any).
    pub fn fsyncdir(&self, ino: u64) -> io::Result<()> {
        if self.opts.no_fsync || !self.writable() {
            return Ok(());
        }
        let (path, place) = self.node_info(ino)?;
        if !place.upper {
            return Ok(());
        }
        let fd = self
            .upper()?
            .open_at(&path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)?;
        File::from(fd).sync_all()
    }
}
