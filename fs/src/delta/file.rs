//! The shared state of an open delta file (one per inode, whatever the number of handles)
//! and the mount's queue of deltas waiting for background compaction (compact.rs).

use crate::delta::format::DeltaMap;
use crate::union::chain::Chain;
use crate::union::meta::Meta;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock, Weak};

/// The shared state of one open delta file.
#[derive(Debug)]
pub struct DeltaFile {
    /// The upper file (read-write).
    pub upper: File,
    /// Where the unwritten blocks come from: the lower file, or the chain of layers below
    /// when that file is itself a delta or a metadata-only copy (chain.rs).
    pub(crate) lower: Chain,
    /// Node and path of the file in the mount (to update the node when it becomes whole).
    pub(crate) ino: u64,
    pub(crate) path: std::path::PathBuf,
    pub(crate) state: Mutex<DeltaState>,
    /// This file's own Arc (to hand it to the compaction worker from a `&DeltaFile`).
    pub(crate) me: Weak<DeltaFile>,
    /// Queued for, or in, background compaction.
    pub(crate) compacting: AtomicBool,
}

/// The mutable part of a [`DeltaFile`], under its lock.
#[derive(Debug)]
pub(crate) struct DeltaState {
    /// The whole meta record; `meta.delta` is Some while the file is a delta.
    pub(crate) meta: Meta,
    /// When it was last written or truncated through the mount (the compaction worker
    /// waits until writes pause: a file being overwritten would have it copy blocks the
    /// writer is about to replace, and take the CPU and the disk from that writer).
    pub(crate) written: Option<std::time::Instant>,
}

impl DeltaFile {
    /// Whether the file has become whole (compacted or truncated to nothing below).
    pub fn is_whole(&self) -> bool {
        self.state.lock().meta.delta.is_none()
    }

    /// Whether it was written or truncated within the last `quiet`.
    pub(crate) fn written_within(&self, quiet: std::time::Duration) -> bool {
        self.state
            .lock()
            .written
            .is_some_and(|t| t.elapsed() < quiet)
    }

    /// The block map (None once whole) and the lower file, for SEEK_DATA / SEEK_HOLE
    /// (seek.rs).
    pub(crate) fn map_and_lower(&self) -> (Option<DeltaMap>, &Chain) {
        (self.state.lock().meta.delta.clone(), &self.lower)
    }

    /// How many files this delta's bytes come from: itself plus its chain below (2 for a
    /// delta over a plain file), for flattening long chains.
    pub fn chain_depth(&self) -> usize {
        self.lower.depth() + 1
    }

    /// Blocks held in the upper and total blocks, for statistics and `whence`.
    pub fn coverage(&self) -> Option<(u64, u64)> {
        let st = self.state.lock();
        let d = st.meta.delta.as_ref()?;
        let size = self.upper.metadata().ok()?.len();
        Some((d.blocks(), size.div_ceil(d.block)))
    }
}

/// The background compaction queue of one mount.
#[derive(Default)]
pub(crate) struct Compactor {
    pub(crate) queue: Mutex<VecDeque<Arc<DeltaFile>>>,
    pub(crate) wake: Condvar,
    pub(crate) stop: AtomicBool,
    /// Set once the worker runs; without it compaction happens in the request (in-process
    /// use of the union without a mount).
    pub(crate) started: OnceLock<()>,
    pub(crate) worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(crate) queued: AtomicU64,
    pub(crate) done: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Jobs ended in any way (done, failed, stopped).
    pub(crate) ended: AtomicU64,
}
