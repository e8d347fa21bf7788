//! FUSE passthrough decisions: which open handles the kernel serves straight from a branch
//! file, and which the daemon serves.
//!
//! The kernel keeps one I/O mode per inode (fs/fuse/iomode.c): while a handle of it is
//! passed through, every other open must be passed through to the same backing file (even
//! FOPEN_DIRECT_IO is refused); while a handle is served through the page cache, a
//! passthrough open is refused. Either mistake fails the open with EIO. So the decision for
//! a new handle and the bookkeeping it implies (backing file, handle counts) happen in one
//! step under one lock, over one state per inode: two concurrent opens of one inode always
//! see each other.
//!
//! The daemon's view is never behind the kernel's: the kernel drops a handle's mode before
//! it sends RELEASE, and a decision is recorded before its reply is sent.

use fuser::{BackingId, FopenFlags};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::sync::Arc;

/// How one handle is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The kernel does its I/O on the backing file.
    Passed,
    /// The daemon serves it through the page cache.
    Cached,
    /// The daemon serves it without the page cache (a delta's handle while the inode is
    /// passed through: cannot happen, as a whole file never becomes a delta again; the
    /// kernel would refuse it).
    Direct,
}

/// What a new handle could be served from.
pub(crate) enum Serve<'a> {
    /// A whole upper file: the kernel may do the handle's I/O on it.
    Whole(&'a File),
    /// A read-only handle on the lower file: it may follow a backing file registered for
    /// the inode's upper copy (made since it was resolved; it holds the same bytes and
    /// newer ones, as a reader moved to the copy-up would read), but cannot start one, as
    /// a later open for writing must reach the upper copy.
    Lower,
    /// A delta (it merges two files): only the daemon can serve it.
    Daemon,
    /// A whole file whose writes strata must see (privs.rs): served in the daemon, unless
    /// the inode is passed through already.
    Watched,
}

/// The I/O state of one inode.
#[derive(Default)]
struct InodeIo {
    /// The backing file registered for it while `passed > 0`.
    backing: Option<Arc<BackingId>>,
    passed: usize,
    cached: usize,
}

#[derive(Default)]
struct State {
    inodes: HashMap<u64, InodeIo>,
    /// Open handles this module decided on: inode and mode.
    handles: HashMap<u64, (u64, Mode)>,
}

/// How the open of a handle is answered.
pub(crate) enum Decision {
    /// Pass it through to this backing file.
    Passthrough(Arc<BackingId>),
    /// Serve it in the daemon with these open flags.
    Daemon(FopenFlags),
}

/// Passthrough state of a mount.
#[derive(Default)]
pub(crate) struct Passthrough {
    enabled: bool,
    state: Mutex<State>,
}

impl Passthrough {
    /// The kernel accepted passthrough at init.
    pub(crate) fn enable(&mut self) {
        self.enabled = true;
    }

    /// Whether passthrough is on for this mount.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Decide how handle `fh` of inode `ino` is served (`serve`: what it could be served
    /// from). `register` registers a whole file with the kernel; `cached` are the flags of
    /// a handle served through the page cache.
    pub(crate) fn open(
        &self,
        ino: u64,
        fh: u64,
        serve: Serve<'_>,
        register: impl FnOnce(&File) -> io::Result<BackingId>,
        cached: FopenFlags,
    ) -> Decision {
        if !self.enabled {
            return Decision::Daemon(cached);
        }
        let mut st = self.state.lock();
        let io = st.inodes.entry(ino).or_default();
        let (mode, decision) = match (serve, io.backing.clone()) {
            // Another handle is passed through: use the same backing file.
            (Serve::Whole(_) | Serve::Lower | Serve::Watched, Some(id)) => {
                (Mode::Passed, Decision::Passthrough(id))
            }
            (Serve::Daemon, Some(_)) => {
                tracing::warn!(ino, "a delta opened while its inode is passed through");
                (Mode::Direct, Decision::Daemon(FopenFlags::FOPEN_DIRECT_IO))
            }
            // A cached handle is open: the kernel would refuse a passthrough open.
            (Serve::Whole(_), None) if io.cached > 0 => (Mode::Cached, Decision::Daemon(cached)),
            (Serve::Whole(f), None) => match register(f) {
                Ok(id) => {
                    let id = Arc::new(id);
                    io.backing = Some(id.clone());
                    (Mode::Passed, Decision::Passthrough(id))
                }
                Err(e) => {
                    tracing::debug!(ino, "passthrough not available for this file: {e}");
                    (Mode::Cached, Decision::Daemon(cached))
                }
            },
            (Serve::Lower | Serve::Daemon | Serve::Watched, None) => {
                (Mode::Cached, Decision::Daemon(cached))
            }
        };
        match mode {
            Mode::Passed => io.passed += 1,
            Mode::Cached => io.cached += 1,
            Mode::Direct => {}
        }
        st.handles.insert(fh, (ino, mode));
        decision
    }

    /// Handle `fh` was released (the kernel has ended its I/O mode share already).
    pub(crate) fn release(&self, fh: u64) {
        let mut st = self.state.lock();
        let Some((ino, mode)) = st.handles.remove(&fh) else {
            return;
        };
        let Some(io) = st.inodes.get_mut(&ino) else {
            return;
        };
        match mode {
            Mode::Passed => {
                io.passed = io.passed.saturating_sub(1);
                if io.passed == 0 {
                    // Unregisters the backing file once the last reply holding it is gone.
                    io.backing = None;
                }
            }
            Mode::Cached => io.cached = io.cached.saturating_sub(1),
            Mode::Direct => {}
        }
        if io.passed == 0 && io.cached == 0 {
            st.inodes.remove(&ino);
        }
    }
}
