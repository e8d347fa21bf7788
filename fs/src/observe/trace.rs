//! Op-by-op tracing: one JSON line per FUSE request, written off the request path.
//!
//! The adapter asks [`Tracer::begin`] whether an op is traced (one branch on an `Option`
//! when tracing is off: no clock read, no allocation), and hands finished requests to
//! [`Tracer::send`], which pushes them into a bounded channel. One writer thread turns them
//! into JSON lines through a `BufWriter`; when the channel is full the event is dropped and
//! counted, so a slow disk never slows the filesystem down. The line format is documented
//! in docs/tracing.md.

pub use crate::observe::filter::{absolute, parse_ops, Glob, Op, TraceOptions, N_OPS};
pub use crate::union::origin::{Branch, Origin};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;
use serde::Serialize;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Events that may wait for the writer before new ones are dropped.
const CHANNEL_CAP: usize = 1 << 16;
/// The writer flushes at least this often while events arrive.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// One traced request, as the adapter hands it over.
#[derive(Debug, Clone)]
pub struct Event {
    /// When the request started.
    pub start: Instant,
    /// Latency.
    pub lat: Duration,
    /// The op.
    pub op: Op,
    /// Merged path of the node (bytes; printed lossily as UTF-8).
    pub path: Vec<u8>,
    /// Second path (rename target, link name).
    pub to: Option<Vec<u8>>,
    /// The branch that served it.
    pub branch: Branch,
    /// For `copyup`: where the node was before.
    pub from: Branch,
    /// For `copyup`: what happened ("data", "meta", "delta", "whole", "dir").
    pub kind: Option<&'static str>,
    /// Offset, where the op has one.
    pub off: Option<u64>,
    /// Bytes moved (read, written, copied) or asked for.
    pub size: Option<u64>,
    /// errno of the reply, 0 on success.
    pub errno: i32,
}

#[derive(Serialize)]
struct Line<'a> {
    t_us: u64,
    op: &'a str,
    path: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    branch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    off: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    errno: i32,
    lat_us: u64,
}

#[derive(Serialize)]
struct EndLine {
    t_us: u64,
    op: &'static str,
    events: u64,
    drops: u64,
}

enum Msg {
    Event(Box<Event>),
    End { events: u64, drops: u64 },
}

/// A running trace: the filters, the channel to the writer thread and its counters.
pub struct Tracer {
    tx: Sender<Msg>,
    t0: Instant,
    ops: u64,
    glob: Option<Glob>,
    events: AtomicU64,
    drops: AtomicU64,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Tracer {
    /// Open the trace file and start the writer thread; None when tracing is off.
    pub fn start(opts: &TraceOptions) -> io::Result<Option<Tracer>> {
        let Some(path) = &opts.file else {
            return Ok(None);
        };
        let file = File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("trace file {}: {e}", path.display())))?;
        let (tx, rx) = crossbeam_channel::bounded(CHANNEL_CAP);
        let t0 = Instant::now();
        let handle = std::thread::Builder::new()
            .name("strata-trace".into())
            .spawn(move || write_loop(rx, BufWriter::with_capacity(1 << 16, file), t0))?;
        Ok(Some(Tracer {
            tx,
            t0,
            ops: opts.ops,
            glob: opts.path.clone(),
            events: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            writer: Mutex::new(Some(handle)),
        }))
    }

    /// The start time of a request if `op` is traced (reads the clock only then).
    #[inline]
    pub fn begin(&self, op: Op) -> Option<Instant> {
        if self.wants(op) {
            Some(Instant::now())
        } else {
            None
        }
    }

    /// Whether the op filter lets `op` through.
    #[inline]
    pub fn wants(&self, op: Op) -> bool {
        self.ops == 0 || self.ops & (1 << op as u64) != 0
    }

    /// Whether the path filter lets `path` through.
    pub fn wants_path(&self, path: &[u8]) -> bool {
        match &self.glob {
            Some(g) => g.matches(path),
            None => true,
        }
    }

    /// Queue an event for the writer; drops (and counts) it when the writer is behind.
    pub fn send(&self, ev: Event) {
        match self.tx.try_send(Msg::Event(Box::new(ev))) {
            Ok(()) => {
                self.events.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.drops.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events queued so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Events dropped because the writer was behind.
    pub fn drops(&self) -> u64 {
        self.drops.load(Ordering::Relaxed)
    }

    /// Time since the trace started.
    pub fn elapsed(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Write the final line, flush and stop the writer (at unmount; idempotent).
    pub fn finish(&self) {
        let Some(handle) = self.writer.lock().take() else {
            return;
        };
        // A blocking send: at unmount it is fine to wait for the writer to catch up.
        let _ = self.tx.send(Msg::End {
            events: self.events(),
            drops: self.drops(),
        });
        if handle.join().is_err() {
            tracing::warn!("the trace writer thread panicked; the trace may be incomplete");
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.finish();
    }
}

fn write_loop(rx: Receiver<Msg>, mut out: BufWriter<File>, t0: Instant) {
    let mut last_flush = Instant::now();
    let mut failed = false;
    loop {
        let r = match rx.recv_timeout(FLUSH_EVERY) {
            Ok(Msg::Event(ev)) => {
                let r = write_event(&mut out, &ev, t0);
                if last_flush.elapsed() >= FLUSH_EVERY {
                    last_flush = Instant::now();
                    r.and_then(|()| out.flush())
                } else {
                    r
                }
            }
            Ok(Msg::End { events, drops }) => {
                let end = EndLine {
                    t_us: t0.elapsed().as_micros() as u64,
                    op: "trace_end",
                    events,
                    drops,
                };
                let r = serde_json::to_writer(&mut out, &end)
                    .map_err(io::Error::other)
                    .and_then(|()| out.write_all(b"\n"))
                    .and_then(|()| out.flush());
                if let Err(e) = r {
                    tracing::warn!("trace file: {e}");
                }
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                last_flush = Instant::now();
                out.flush()
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        };
        if let Err(e) = r {
            // Keep draining so requests never block; say it once.
            if !failed {
                tracing::warn!("cannot write the trace file: {e}; later events are lost");
                failed = true;
            }
        }
    }
}

fn write_event(out: &mut BufWriter<File>, ev: &Event, t0: Instant) -> io::Result<()> {
    let line = Line {
        t_us: ev.start.saturating_duration_since(t0).as_micros() as u64,
        op: ev.op.name(),
        path: String::from_utf8_lossy(&ev.path),
        to: ev.to.as_deref().map(String::from_utf8_lossy),
        branch: ev.branch.text(),
        from: ev.from.text(),
        kind: ev.kind,
        off: ev.off,
        size: ev.size,
        errno: ev.errno,
        lat_us: ev.lat.as_micros() as u64,
    };
    serde_json::to_writer(&mut *out, &line).map_err(io::Error::other)?;
    out.write_all(b"\n")
}
