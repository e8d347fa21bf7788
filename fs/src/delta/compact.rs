//! Compaction off the request path: a delta that covers most of its file (more than
//! `compact_ratio` of its blocks) or whose block list grew too long becomes a whole file,
//! copied by a background worker while readers and writers go on.
//!
//! How the copy stays correct and crash-safe without holding the file's lock throughout:
//! - It copies in place, into the upper file itself, and only where the record does not
//!   claim the block: bytes there are read from the lower file by everyone anyway, so the
//!   merged view never changes while the copy runs, and a kill at any point leaves the old
//!   record, a valid delta (the extra upper bytes are ignored; nothing is format-visible).
//! - It goes in chunks: the lower bytes of a chunk are read without the lock (the lower
//!   file never changes), then, under the lock, written only where the current map still
//!   says "from below" (a writer may have claimed blocks meanwhile, a truncation may have
//!   cut the file). The set of bytes that come from below only ever shrinks (writes claim
//!   blocks, truncation lowers the lower limit), so a chunk once copied stays copied, and
//!   a write arriving during compaction claims its blocks as usual and is kept.
//! - At the end the upper file is synced, then, under the lock, the record is rewritten
//!   without the delta: from then on the upper file is the whole file.
//!
//! One worker thread per mount and a bounded queue; a full queue leaves the file a delta
//! (a later write asks again). Unmount stops the worker between two chunks. A file is
//! copied only once it has gone unwritten for a moment: copying under a writer that goes on
//! copies blocks the writer then replaces, and halves its CPU and disk (a sequential 1 GiB
//! overwrite of a delta took 3.7 s with the copy running beside it).

use crate::delta::file::DeltaFile;
use crate::delta::format::{DeltaMap, Source};
use crate::union::fs::Union;
use serde::Serialize;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

/// Bytes copied per step (the lock is held for the writes of one step only).
const CHUNK: u64 = 1 << 20;
/// Files waiting for the worker at most.
const QUEUE_CAP: usize = 64;
/// How long a file must go unwritten before the worker copies it.
const QUIET: std::time::Duration = std::time::Duration::from_millis(300);

/// Compaction counters of a mount (`strata fs stats`, docs/control.md).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CompactionStats {
    /// Deltas handed to the background worker.
    pub queued: u64,
    /// Of those, made whole files.
    pub done: u64,
    /// Of those, given up on (an I/O error; the file stays a delta).
    pub failed: u64,
    /// Waiting or being copied now.
    pub pending: u64,
}

/// Start the compaction worker of `union` (once; later calls do nothing).
pub fn start(union: &Arc<Union>) {
    let c = &union.compactor;
    if c.started.get().is_some() {
        return;
    }
    let weak: Weak<Union> = Arc::downgrade(union);
    let spawned = std::thread::Builder::new()
        .name("strata-compact".into())
        .spawn(move || worker(weak));
    match spawned {
        Ok(h) => {
            *c.worker.lock() = Some(h);
            let _ = c.started.set(());
        }
        // Compaction then happens inside the requests, as it would without a mount.
        Err(e) => tracing::warn!("cannot start the compaction worker: {e}"),
    }
}

fn worker(union: Weak<Union>) {
    loop {
        let job = {
            let Some(u) = union.upgrade() else { return };
            let c = &u.compactor;
            let mut q = c.queue.lock();
            loop {
                if c.stop.load(Ordering::Acquire) {
                    return;
                }
                if let Some(d) = q.pop_front() {
                    // The file's lock is taken without the queue's: a writer holds its
                    // file's lock when it queues a file.
                    drop(q);
                    let busy = d.written_within(QUIET);
                    q = c.queue.lock();
                    if !busy {
                        break d;
                    }
                    // Still being written: its turn comes again once writes pause (a file
                    // overwritten to the end becomes whole without a copy meanwhile).
                    q.push_back(d);
                    c.wake.wait_for(&mut q, QUIET);
                    continue;
                }
                // Woken by queue() and stop(); the timeout only re-checks the union.
                c.wake.wait_for(&mut q, std::time::Duration::from_secs(60));
            }
        };
        let Some(u) = union.upgrade() else { return };
        let c = &u.compactor;
        match u.compact_delta(&job, Some(&c.stop)) {
            Ok(true) => {
                c.done.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(file = %job.path.display(), "delta compacted in the background");
            }
            Ok(false) => {}
            Err(e) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %job.path.display(), "background compaction failed, the file stays a delta: {e}");
            }
        }
        job.compacting.store(false, Ordering::Release);
        c.ended.fetch_add(1, Ordering::Release);
    }
}

impl Union {
    /// Hand delta `d` to the background worker. False when there is none (the caller
    /// compacts now); true when queued, already queued, or the queue is full (the file
    /// stays a delta until a later write asks again).
    pub(crate) fn queue_compaction(&self, d: &DeltaFile) -> bool {
        let c = &self.compactor;
        if c.started.get().is_none() || c.stop.load(Ordering::Acquire) {
            return false;
        }
        if d.compacting.swap(true, Ordering::AcqRel) {
            return true;
        }
        let Some(me) = d.me.upgrade() else {
            d.compacting.store(false, Ordering::Release);
            return false;
        };
        let mut q = c.queue.lock();
        if q.len() >= QUEUE_CAP {
            d.compacting.store(false, Ordering::Release);
            tracing::debug!(file = %d.path.display(), "compaction queue full; the file stays a delta for now");
            return true;
        }
        q.push_back(me);
        c.queued.fetch_add(1, Ordering::Relaxed);
        c.wake.notify_one();
        true
    }

    /// Stop the compaction worker (at unmount): it ends between two chunks, leaving any
    /// delta it was copying a valid delta.
    pub fn stop_background(&self) {
        let c = &self.compactor;
        c.stop.store(true, Ordering::Release);
        {
            let _q = c.queue.lock();
            c.wake.notify_all();
        }
        if let Some(h) = c.worker.lock().take() {
            let _ = h.join();
        }
        c.queue.lock().clear();
    }

    /// Compaction counters.
    pub fn compaction_stats(&self) -> CompactionStats {
        let c = &self.compactor;
        let ended = c.ended.load(Ordering::Acquire);
        let queued = c.queued.load(Ordering::Relaxed);
        CompactionStats {
            queued,
            done: c.done.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            pending: queued.saturating_sub(ended),
        }
    }

    /// Make delta `d` a whole file, chunk by chunk (see the module comment). Ok(false):
    /// `stop` was raised first and the file is still a (valid) delta.
    pub(crate) fn compact_delta(
        &self,
        d: &DeltaFile,
        stop: Option<&AtomicBool>,
    ) -> io::Result<bool> {
        let mut pos = 0u64;
        let mut buf = Vec::new();
        loop {
            if stop.is_some_and(|s| s.load(Ordering::Acquire)) {
                return Ok(false);
            }
            let (span, runs) = {
                let st = d.state.lock();
                let Some(map) = &st.meta.delta else {
                    return Ok(true);
                };
                let end = d.upper.metadata()?.len().min(map.limit);
                if pos >= end {
                    break;
                }
                let span = (end - pos).min(CHUNK);
                (span, lower_runs(map, pos, span))
            };
            buf.resize(span as usize, 0);
            for &(o, n) in &runs {
                let at = (o - pos) as usize;
                d.lower.read(&mut buf[at..at + n as usize], o)?;
            }
            {
                let st = d.state.lock();
                let Some(map) = &st.meta.delta else {
                    return Ok(true);
                };
                let size = d.upper.metadata()?.len();
                // Only what still comes from below now: a subset of what was read.
                for (o, n) in lower_runs(map, pos, span) {
                    let n = n.min(size.saturating_sub(o));
                    let at = (o - pos) as usize;
                    d.upper.write_all_at(&buf[at..at + n as usize], o)?;
                }
            }
            pos += span;
        }
        // The copied bytes are durable before the record says the file is whole.
        if !self.opts.no_fsync {
            d.upper.sync_data()?;
        }
        let mut st = d.state.lock();
        let Some(map) = st.meta.delta.take() else {
            return Ok(true);
        };
        st.meta.data = None;
        st.meta.ident = None;
        if let Err(e) = self.meta.write_fd(d.upper.as_fd(), &st.meta) {
            st.meta.delta = Some(map);
            return Err(e);
        }
        self.mark_whole(d.ino, &d.path);
        tracing::debug!(file = %d.path.display(), blocks = map.blocks(), "delta made whole");
        Ok(true)
    }
}

/// The ranges of `off..off+len` that `map` reads from the lower file.
fn lower_runs(map: &DeltaMap, off: u64, len: u64) -> Vec<(u64, u64)> {
    map.runs(off, len)
        .into_iter()
        .filter(|r| r.0 == Source::Lower)
        .map(|(_, o, n)| (o, n))
        .collect()
}
