//! Live counters of a mount, bumped by the FUSE adapter and read by `strata fs stats`.
//!
//! Plain relaxed atomics: the counters are statistics, not synchronization, and each op
//! touches only its own counter plus a few totals.

use crate::observe::filter::{Op, N_OPS};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// errno values at or above this are counted together.
const MAX_ERRNO: usize = 140;

/// Counters of one mount.
pub struct Stats {
    ops: [AtomicU64; N_OPS],
    errors: [AtomicU64; N_OPS],
    errnos: [AtomicU64; MAX_ERRNO + 1],
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    copyups: AtomicU64,
    meta_copyups: AtomicU64,
    dir_copyups: AtomicU64,
    bytes_copied: AtomicU64,
    deltas_created: AtomicU64,
    deltas_made_whole: AtomicU64,
    delta_writes: AtomicU64,
    delta_blocks_written: AtomicU64,
    open_files: AtomicI64,
    open_dirs: AtomicI64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            ops: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            errnos: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            copyups: AtomicU64::new(0),
            meta_copyups: AtomicU64::new(0),
            dir_copyups: AtomicU64::new(0),
            bytes_copied: AtomicU64::new(0),
            deltas_created: AtomicU64::new(0),
            deltas_made_whole: AtomicU64::new(0),
            delta_writes: AtomicU64::new(0),
            delta_blocks_written: AtomicU64::new(0),
            open_files: AtomicI64::new(0),
            open_dirs: AtomicI64::new(0),
        }
    }
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// What a node went through during a request, seen by comparing placements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// Whole data copied up (with its size).
    Data(u64),
    /// Metadata-only copy-up.
    Meta,
    /// A directory was copied up.
    Dir,
    /// A block-level delta was created.
    Delta,
    /// A delta was made a whole file.
    Whole,
}

impl Move {
    /// The `kind` of the trace's copyup event.
    pub fn name(self) -> &'static str {
        match self {
            Move::Data(_) => "data",
            Move::Meta => "meta",
            Move::Dir => "dir",
            Move::Delta => "delta",
            Move::Whole => "whole",
        }
    }
}

impl Stats {
    /// Count a finished request.
    #[inline]
    pub fn request(&self, op: Op, errno: i32, bytes: u64) {
        bump(&self.ops[op as usize], 1);
        if errno != 0 {
            bump(&self.errors[op as usize], 1);
            bump(&self.errnos[(errno.max(0) as usize).min(MAX_ERRNO)], 1);
            return;
        }
        match op {
            Op::Read => bump(&self.bytes_read, bytes),
            Op::Write | Op::CopyFileRange => bump(&self.bytes_written, bytes),
            Op::Open | Op::Create => {
                self.open_files.fetch_add(1, Ordering::Relaxed);
            }
            Op::Release => {
                self.open_files.fetch_sub(1, Ordering::Relaxed);
            }
            Op::Opendir => {
                self.open_dirs.fetch_add(1, Ordering::Relaxed);
            }
            Op::Releasedir => {
                self.open_dirs.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Count a copy-up, metadata copy, delta creation or compaction.
    pub fn moved(&self, m: Move) {
        match m {
            Move::Data(n) => {
                bump(&self.copyups, 1);
                bump(&self.bytes_copied, n);
            }
            Move::Meta => bump(&self.meta_copyups, 1),
            Move::Dir => bump(&self.dir_copyups, 1),
            Move::Delta => bump(&self.deltas_created, 1),
            Move::Whole => bump(&self.deltas_made_whole, 1),
        }
    }

    /// Count a write into a delta touching `blocks` blocks.
    pub fn delta_write(&self, blocks: u64) {
        bump(&self.delta_writes, 1);
        bump(&self.delta_blocks_written, blocks);
    }

    /// A snapshot for `strata fs stats`; `nodes` and the trace counters come from elsewhere.
    pub fn snapshot(&self, nodes: usize, trace: Option<(u64, u64)>) -> Snapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut ops = BTreeMap::new();
        let mut errors = BTreeMap::new();
        for op in Op::ALL {
            let n = load(&self.ops[*op as usize]);
            if n > 0 {
                ops.insert(op.name(), n);
            }
            let e = load(&self.errors[*op as usize]);
            if e > 0 {
                errors.insert(op.name(), e);
            }
        }
        let mut errnos = BTreeMap::new();
        for (i, c) in self.errnos.iter().enumerate() {
            let n = load(c);
            if n > 0 {
                errnos.insert(errno_name(i as i32), n);
            }
        }
        Snapshot {
            ops,
            errors,
            errnos,
            bytes_read: load(&self.bytes_read),
            bytes_written: load(&self.bytes_written),
            copyups: load(&self.copyups),
            bytes_copied: load(&self.bytes_copied),
            meta_copyups: load(&self.meta_copyups),
            dir_copyups: load(&self.dir_copyups),
            deltas_created: load(&self.deltas_created),
            deltas_made_whole: load(&self.deltas_made_whole),
            delta_writes: load(&self.delta_writes),
            delta_blocks_written: load(&self.delta_blocks_written),
            open_files: self.open_files.load(Ordering::Relaxed).max(0) as u64,
            open_dirs: self.open_dirs.load(Ordering::Relaxed).max(0) as u64,
            nodes: nodes as u64,
            tracing: trace.is_some(),
            trace_events: trace.map_or(0, |t| t.0),
            trace_drops: trace.map_or(0, |t| t.1),
            compactions: crate::delta::compact::CompactionStats::default(),
        }
    }
}

/// The symbolic name of an errno ("ENOENT"), or its number.
pub fn errno_name(e: i32) -> String {
    let n = nix::errno::Errno::from_raw(e);
    if n == nix::errno::Errno::UnknownErrno {
        format!("E{e}")
    } else {
        format!("{n:?}")
    }
}

/// The counters at one moment, as `strata fs stats` prints them (field names are the
/// protocol's; see docs/control.md).
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Requests by op.
    pub ops: BTreeMap<&'static str, u64>,
    /// Failed requests by op.
    pub errors: BTreeMap<&'static str, u64>,
    /// Failed requests by errno name.
    pub errnos: BTreeMap<String, u64>,
    /// Bytes returned by read.
    pub bytes_read: u64,
    /// Bytes accepted by write and copy_file_range.
    pub bytes_written: u64,
    /// Whole-file copy-ups.
    pub copyups: u64,
    /// Bytes those copy-ups copied.
    pub bytes_copied: u64,
    /// Metadata-only copy-ups.
    pub meta_copyups: u64,
    /// Directories copied up.
    pub dir_copyups: u64,
    /// Block-level deltas created.
    pub deltas_created: u64,
    /// Deltas made whole files (compaction).
    pub deltas_made_whole: u64,
    /// Writes into deltas.
    pub delta_writes: u64,
    /// Delta blocks those writes touched.
    pub delta_blocks_written: u64,
    /// Open file handles.
    pub open_files: u64,
    /// Open directory handles.
    pub open_dirs: u64,
    /// Nodes in the inode table.
    pub nodes: u64,
    /// Whether this mount is being traced.
    pub tracing: bool,
    /// Trace events queued.
    pub trace_events: u64,
    /// Trace events dropped because the writer was behind.
    pub trace_drops: u64,
    /// Background compactions (filled in from the union by the control server).
    pub compactions: crate::delta::compact::CompactionStats,
}
