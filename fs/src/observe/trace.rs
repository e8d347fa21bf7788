//! Op-by-op tracing: one JSON line per FUSE request, written off the request path.
//!
//! The adapter asks [`Tracer::begin`] whether an op is traced (one branch on an `Option`
//! when tracing is off: no clock read, no allocation), and hands finished requests to
//! [`Tracer::send`], which pushes them into a bounded channel. One writer thread turns them
//! into JSON lines through a `BufWriter`; when the channel is full the event is dropped and
//! counted, so a slow disk never slows the filesystem down. The line format is documented
//! in docs/tracing.md.

use crate::union::inode::Placement;
use crate::union::fs::Union;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;
use serde::Serialize;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Events that may wait for the writer before new ones are dropped.
const CHANNEL_CAP: usize = 1 << 16;
/// The writer flushes at least this often while events arrive.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

macro_rules! ops {
    ($($v:ident = $s:literal),* $(,)?) => {
        /// A traced operation: every FUSE request the adapter serves, plus `copyup`, the
        /// event recorded when a request moved a node up (copy-up, metadata copy, delta).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Op { $(#[doc = $s] $v),* }

        impl Op {
            /// Every op, in declaration order (index = `op as usize`).
            pub const ALL: &'static [Op] = &[$(Op::$v),*];

            /// The name used in traces and on the command line.
            pub fn name(self) -> &'static str {
                match self { $(Op::$v => $s),* }
            }

            /// The op called `s`.
            pub fn parse(s: &str) -> Option<Op> {
                match s { $($s => Some(Op::$v),)* _ => None }
            }
        }
    };
}

ops! {
    Lookup = "lookup", Forget = "forget", Getattr = "getattr", Setattr = "setattr",
    Readlink = "readlink", Mknod = "mknod", Mkdir = "mkdir", Unlink = "unlink",
    Rmdir = "rmdir", Symlink = "symlink", Rename = "rename", Link = "link", Open = "open",
    Read = "read", Write = "write", Flush = "flush", Release = "release", Fsync = "fsync",
    Opendir = "opendir", Readdir = "readdir", Readdirplus = "readdirplus",
    Releasedir = "releasedir", Fsyncdir = "fsyncdir", Statfs = "statfs",
    Setxattr = "setxattr", Getxattr = "getxattr", Listxattr = "listxattr",
    Removexattr = "removexattr", Access = "access", Create = "create",
    Fallocate = "fallocate", Lseek = "lseek", CopyFileRange = "copy_file_range",
    Ioctl = "ioctl", Poll = "poll", Copyup = "copyup",
}

/// Number of ops (size of per-op counter arrays).
pub const N_OPS: usize = Op::ALL.len();

/// Parse a comma- or colon-separated op list (`read,write`) into a bit mask.
pub fn parse_ops(list: &str) -> Result<u64, String> {
    let mut mask = 0u64;
    for name in list
        .split([',', ':'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let op = Op::parse(name).ok_or_else(|| {
            let all: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
            format!(
                "unknown op '{name}' in the trace op list (known: {})",
                all.join(", ")
            )
        })?;
        mask |= 1 << op as u64;
    }
    if mask == 0 {
        return Err("empty trace op list".into());
    }
    Ok(mask)
}

/// A shell-style glob over mount paths: `*` and `?` stay inside one path component, `**`
/// crosses `/`. A leading `/` is optional on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<u8>);

impl Glob {
    /// Compile a pattern.
    pub fn new(pat: &str) -> Glob {
        Glob(pat.trim_start_matches('/').as_bytes().to_vec())
    }

    /// Whether `path` (with or without a leading `/`) matches.
    pub fn matches(&self, path: &[u8]) -> bool {
        let p = match path.first() {
            Some(b'/') => &path[1..],
            _ => path,
        };
        let mut memo = vec![None; (self.0.len() + 1) * (p.len() + 1)];
        glob_match(&self.0, p, 0, 0, &mut memo)
    }
}

/// Whether `pat[pi..]` matches `s[si..]`; `memo` remembers every (pi, si) answered, so a
/// pattern with many stars costs at most len(pat) * len(s) steps, never exponential time.
fn glob_match(pat: &[u8], s: &[u8], pi: usize, si: usize, memo: &mut [Option<bool>]) -> bool {
    let key = pi * (s.len() + 1) + si;
    if let Some(Some(known)) = memo.get(key) {
        return *known;
    }
    let rest_s = s.get(si..).unwrap_or(&[]);
    let answer = match pat.get(pi) {
        None => rest_s.is_empty(),
        Some(b'*') if pat.get(pi + 1) == Some(&b'*') => {
            // `**/` also matches no directory at all.
            (pat.get(pi + 2) == Some(&b'/') && glob_match(pat, s, pi + 3, si, memo))
                || (si..=s.len()).any(|i| glob_match(pat, s, pi + 2, i, memo))
        }
        Some(b'*') => {
            let stop = rest_s
                .iter()
                .position(|&c| c == b'/')
                .unwrap_or(rest_s.len());
            (si..=si + stop).any(|i| glob_match(pat, s, pi + 1, i, memo))
        }
        Some(b'?') => {
            matches!(rest_s.first(), Some(&c) if c != b'/')
                && glob_match(pat, s, pi + 1, si + 1, memo)
        }
        Some(&c) => rest_s.first() == Some(&c) && glob_match(pat, s, pi + 1, si + 1, memo),
    };
    if let Some(slot) = memo.get_mut(key) {
        *slot = Some(answer);
    }
    answer
}

/// What `--trace` and its filters ask for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceOptions {
    /// The trace file (None: tracing off).
    pub file: Option<PathBuf>,
    /// Bit mask of traced ops (`1 << op`); 0 = all.
    pub ops: u64,
    /// Only paths matching this glob.
    pub path: Option<Glob>,
}

/// Where a node's content is served from, read from the inode table without I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The upper branch (whole file, or directory present there).
    Upper,
    /// Lower branch N.
    Lower(usize),
    /// Upper entry whose data is still in lower branch N (metadata-only copy).
    MetaCopy(usize),
    /// Block-level delta in the upper over lower branch N.
    Delta(usize),
}

impl Origin {
    /// The origin described by a placement.
    pub fn of(p: &Placement) -> Origin {
        let below = p.lower.as_ref().map(|(l, _)| *l);
        match (p.upper, below, p.delta) {
            (true, Some(l), true) => Origin::Delta(l),
            (true, Some(l), false) if !p.is_dir() => Origin::MetaCopy(l),
            (true, _, _) => Origin::Upper,
            (false, Some(l), _) => Origin::Lower(l),
            (false, None, _) => Origin::Lower(
                p.dir
                    .as_ref()
                    .and_then(|d| d.layers.first().map(|(l, _)| *l))
                    .unwrap_or(0),
            ),
        }
    }

    /// The branch label used in traces: "upper", "lower N" or "delta". A metadata-only
    /// copy answers metadata from the upper, so it is "upper" here; reads through an open
    /// handle name the branch the handle reads.
    pub fn label(self) -> Branch {
        match self {
            Origin::Upper | Origin::MetaCopy(_) => Branch::Upper,
            Origin::Lower(n) => Branch::Lower(n),
            Origin::Delta(_) => Branch::Delta,
        }
    }
}

/// The branch that served a request, as written in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Branch {
    /// Not known or not applicable (failed lookup, statfs).
    None,
    /// The upper branch.
    Upper,
    /// Lower branch N.
    Lower(usize),
    /// A block-level delta (upper blocks merged over a lower file).
    Delta,
}

impl Branch {
    fn text(self) -> Option<String> {
        match self {
            Branch::None => None,
            Branch::Upper => Some("upper".into()),
            Branch::Lower(n) => Some(format!("lower {n}")),
            Branch::Delta => Some("delta".into()),
        }
    }
}

impl Union {
    /// Where node `ino` is served from right now and whether it is a directory, from the
    /// inode table (no I/O); None when the table does not hold it.
    pub fn origin(&self, ino: u64) -> Option<(Origin, bool)> {
        self.nodes
            .read()
            .get(ino)
            .map(|n| (Origin::of(&n.place), n.place.is_dir()))
    }

    /// The merged path of node `ino` as `/a/b` (best effort: empty when unreachable).
    pub fn trace_path(&self, ino: u64, name: Option<&std::ffi::OsStr>) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut out = Vec::with_capacity(64);
        if let Some(p) = self.nodes.read().path(ino) {
            for c in p.iter() {
                out.push(b'/');
                out.extend_from_slice(c.as_bytes());
            }
        } else if name.is_none() {
            return out;
        }
        match name {
            Some(n) => {
                out.push(b'/');
                out.extend_from_slice(n.as_bytes());
            }
            None if out.is_empty() => out.push(b'/'),
            None => {}
        }
        out
    }
}

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

/// An absolute form of a trace path given on the command line (the daemon may change
/// directory later).
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir().map_or_else(|_| p.to_path_buf(), |d| d.join(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = Glob::new("/var/lib/**");
        assert!(g.matches(b"/var/lib/db.img"));
        assert!(g.matches(b"/var/lib/a/b/c"));
        assert!(!g.matches(b"/var/log/x"));
        let g = Glob::new("**/*.db");
        assert!(g.matches(b"/x.db"));
        assert!(g.matches(b"/a/b/x.db"));
        assert!(!g.matches(b"/a/b/x.dbx"));
        let g = Glob::new("etc/*");
        assert!(g.matches(b"/etc/passwd"));
        assert!(!g.matches(b"/etc/ssl/certs"));
        assert!(Glob::new("/f?o").matches(b"/foo"));
        assert!(!Glob::new("/f?o").matches(b"/f/o"));
    }

    #[test]
    fn op_lists() {
        let m = parse_ops("read,write").unwrap();
        assert_eq!(m, (1 << Op::Read as u64) | (1 << Op::Write as u64));
        assert!(parse_ops("read,bogus").unwrap_err().contains("bogus"));
        for op in Op::ALL {
            assert_eq!(Op::parse(op.name()), Some(*op));
        }
    }
}
