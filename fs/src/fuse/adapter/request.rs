//! One request as the adapter observes it: run it, reply, count it in the stats and, when
//! tracing is on, time it and hand a trace event to the writer.

use super::FuseAdapter;
use crate::fuse::request_guard::guarded;
use crate::observe::stats::{errno_name, Move};
use crate::observe::trace::{Branch, Event, Op, Origin};
use crate::types::{err_no, Layer};
use crate::union::attr::Attr;
use std::ffi::OsStr;
use std::io;
use std::time::{Duration, Instant};

/// What a request is about: enough to name it in the trace and the debug log.
#[derive(Debug, Clone, Copy)]
pub(super) enum On<'a> {
    /// A node.
    Node(u64),
    /// A name in a directory node.
    Name(u64, &'a OsStr),
    /// An open file handle of a node.
    Fh(u64, u64),
    /// A rename: from (parent, name) to (parent, name).
    Rename(u64, &'a OsStr, u64, &'a OsStr),
    /// A new name (parent, name) for a node.
    Link(u64, u64, &'a OsStr),
}

/// One request as the adapter observes it.
pub(super) struct Req<'a> {
    pub(super) op: Op,
    pub(super) on: On<'a>,
    pub(super) off: Option<u64>,
    /// A node whose placement may change (copy-up): compared before and after.
    pub(super) watch: Option<u64>,
}

impl<'a> Req<'a> {
    pub(super) fn new(op: Op, on: On<'a>) -> Req<'a> {
        Req {
            op,
            on,
            off: None,
            watch: None,
        }
    }

    pub(super) fn at(mut self, off: u64) -> Req<'a> {
        self.off = Some(off);
        self
    }

    pub(super) fn watch(mut self, ino: u64) -> Req<'a> {
        self.watch = Some(ino);
        self
    }
}

/// What a finished request produced.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Out {
    pub(super) errno: i32,
    pub(super) bytes: Option<u64>,
    /// The node it found or made.
    pub(super) ino: u64,
    /// The file handle it opened.
    pub(super) fh: Option<u64>,
}

impl Out {
    pub(super) fn bytes(n: usize) -> Out {
        Out {
            bytes: Some(n as u64),
            ..Out::default()
        }
    }

    pub(super) fn node(a: &Attr) -> Out {
        Out {
            ino: a.ino,
            ..Out::default()
        }
    }
}

pub(super) fn none<T>(_: &T) -> Out {
    Out::default()
}

/// What a node went through, from its origin before and after a request.
pub(super) fn moved((before, was_dir): (Origin, bool), (after, _): (Origin, bool)) -> Option<Move> {
    match (before, after) {
        (Origin::Lower(_), Origin::Upper) if was_dir => Some(Move::Dir),
        (Origin::Lower(_) | Origin::MetaCopy(_), Origin::Upper) => Some(Move::Data(0)),
        (Origin::Lower(_), Origin::MetaCopy(_)) => Some(Move::Meta),
        (Origin::Lower(_) | Origin::MetaCopy(_), Origin::Delta(_)) => Some(Move::Delta),
        (Origin::Delta(_), Origin::Upper) => Some(Move::Whole),
        _ => None,
    }
}

impl FuseAdapter {
    /// Serve one request: call the core, reply, then count (and maybe trace) it. With
    /// tracing off this adds no clock read and no allocation.
    #[inline]
    pub(super) fn run<T>(
        &self,
        req: Req<'_>,
        call: impl FnOnce() -> io::Result<T>,
        info: impl FnOnce(&T) -> Out,
        reply: impl FnOnce(io::Result<T>),
    ) {
        let t = match &self.tracer {
            Some(tr) => tr.begin(req.op),
            None => None,
        };
        // A panic costs only this request: it is answered EIO (a reply dropped unsent
        // sends EIO too) and the thread goes on serving.
        let op = req.op.name();
        let before = guarded(op, || req.watch.and_then(|ino| self.union.origin(ino))).flatten();
        let r = guarded(op, || {
            if let (Op::Lookup, On::Name(_, name)) = (req.op, req.on) {
                crate::fuse::request_guard::test_panic_point(name);
            }
            call()
        })
        .unwrap_or_else(|| Err(io::Error::from_raw_os_error(libc::EIO)));
        let out = match &r {
            Ok(v) => guarded(op, || info(v)).unwrap_or_default(),
            Err(e) => Out {
                errno: err_no(e),
                ..Out::default()
            },
        };
        let lat = t.map(|t| t.elapsed());
        // What the request moved between branches is measured before the reply: once it
        // is out, the kernel may send the next request on that file (the write after an
        // open that copied it up) and the sizes would count that too.
        let mv = guarded(op, || self.moved_by(&req, before)).flatten();
        let _ = guarded(op, || reply(r));
        let _ = guarded(op, || self.finish(t.zip(lat), &req, mv, out));
    }

    /// The copy-up, metadata copy, delta ... a request made of its watched inode.
    pub(super) fn moved_by(
        &self,
        req: &Req<'_>,
        before: Option<(Origin, bool)>,
    ) -> Option<(u64, Origin, Origin, Move)> {
        let (b, ino) = (before?, req.watch?);
        let a = self.union.origin(ino)?;
        let m = match moved(b, a)? {
            Move::Data(_) => Move::Data(self.union.getattr(ino).map_or(0, |a| a.size)),
            m => m,
        };
        Some((ino, b.0, a.0, m))
    }

    /// The bookkeeping after a reply went out.
    pub(super) fn finish(
        &self,
        timed: Option<(Instant, Duration)>,
        req: &Req<'_>,
        mv: Option<(u64, Origin, Origin, Move)>,
        out: Out,
    ) {
        self.stats
            .request(req.op, out.errno, out.bytes.unwrap_or(0));
        if out.errno != 0 {
            tracing::debug!(
                op = req.op.name(),
                errno = out.errno,
                on = ?req.on,
                "request failed: {}",
                errno_name(out.errno)
            );
        }
        let mut delta_write = false;
        if req.op == Op::Write && out.errno == 0 {
            if let On::Fh(_, fh) = req.on {
                if self.union.file(fh).is_ok_and(|f| f.live_delta().is_some()) {
                    delta_write = true;
                    let off = req.off.unwrap_or(0);
                    let end = off.saturating_add(out.bytes.unwrap_or(0));
                    let blocks = end.div_ceil(self.delta_block) - off / self.delta_block;
                    self.stats.delta_write(blocks);
                }
            }
        }
        if let Some((_, _, _, m)) = mv {
            self.stats.moved(m);
        }
        let (Some(tr), Some((start, lat))) = (&self.tracer, timed) else {
            return;
        };
        let (path, to) = self.paths(req.on);
        if !tr.wants_path(&path) && !to.as_deref().is_some_and(|t| tr.wants_path(t)) {
            return;
        }
        let branch = if delta_write {
            Branch::Delta
        } else {
            self.branch_of(req.on, &out)
        };
        if let Some((ino, b, a, m)) = mv {
            tr.send(Event {
                start,
                lat,
                op: Op::Copyup,
                // The node copied up: a create in a lower directory copies up the
                // directory, not the new name the request carries.
                path: self.union.trace_path(ino, None),
                to: None,
                branch: a.label(),
                from: b.label(),
                kind: Some(m.name()),
                off: None,
                size: match m {
                    Move::Data(n) => Some(n),
                    _ => None,
                },
                errno: 0,
            });
        }
        tr.send(Event {
            start,
            lat,
            op: req.op,
            path,
            to,
            branch,
            from: Branch::None,
            kind: None,
            off: req.off,
            size: out.bytes,
            errno: out.errno,
        });
    }

    /// Merged paths a request names (best effort), for the trace.
    pub(super) fn paths(&self, on: On<'_>) -> (Vec<u8>, Option<Vec<u8>>) {
        match on {
            On::Node(ino) | On::Fh(ino, _) => (self.union.trace_path(ino, None), None),
            On::Name(p, n) => (self.union.trace_path(p, Some(n)), None),
            On::Rename(p, n, np, nn) => (
                self.union.trace_path(p, Some(n)),
                Some(self.union.trace_path(np, Some(nn))),
            ),
            On::Link(ino, np, nn) => (
                self.union.trace_path(ino, None),
                Some(self.union.trace_path(np, Some(nn))),
            ),
        }
    }

    /// The branch that served a request: an open handle's branch, else the node's.
    pub(super) fn branch_of(&self, on: On<'_>, out: &Out) -> Branch {
        let fh = match on {
            On::Fh(_, fh) => Some(fh),
            _ => out.fh,
        };
        if let Some(f) = fh.and_then(|fh| self.union.file(fh).ok()) {
            return match (f.live_delta(), f.layer) {
                (Some(_), _) => Branch::Delta,
                (None, Layer::Upper) => Branch::Upper,
                (None, Layer::Lower(n)) => Branch::Lower(n),
            };
        }
        let node = match on {
            _ if out.ino != 0 => out.ino,
            On::Node(ino) | On::Fh(ino, _) => ino,
            // A failed name op (a lookup of nothing) was served by no branch.
            _ if out.errno != 0 => return Branch::None,
            On::Link(ino, _, _) => ino,
            On::Name(p, _) | On::Rename(_, _, p, _) => p,
        };
        self.union
            .origin(node)
            .map_or(Branch::None, |(o, _)| o.label())
    }
}
