//! The daemon side of the control socket (docs/control.md): binding it, who may talk to
//! it, and serving requests.
//!
//! Hardening: the socket is bound inside a private 0700 directory, made 0600 there and
//! only then renamed into place, so at its path it never has a wider mode (the umask is
//! process-wide and request threads exist, so it is not touched); each connection's peer
//! must be root or the daemon's own uid (SO_PEERCRED, as root bypasses the mode); at most
//! [`MAX_CONNS`] connections are served at once, and a request line longer than
//! [`MAX_LINE`] is refused without reading further.

use crate::observe::control::{mount_key, registry_dirs, MAX_SOCK_PATH, PROTOCOL};
use crate::observe::stats::Stats;
use crate::observe::trace::Tracer;
use crate::union::atime::AtimePolicy;
use crate::union::fs::Union;
use serde_json::{json, Value};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Connections served at once; more are answered with an error and closed.
pub const MAX_CONNS: usize = 16;
/// Longest request line in bytes (a whence path is at most PATH_MAX).
pub const MAX_LINE: usize = 64 * 1024;
/// An idle connection is closed after this long.
const IDLE: Duration = Duration::from_secs(300);

/// A directory we own and may put sockets in (created 0700 if missing).
fn usable_dir(d: &Path, uid: u32) -> bool {
    if let Some(parent) = d.parent() {
        if !parent.is_dir() {
            return false;
        }
    }
    let _ = std::fs::DirBuilder::new().mode(0o700).create(d);
    // Someone else's directory in /tmp could redirect our socket: refuse it.
    std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir() && m.uid() == uid)
}

/// The running control server; removes its socket (and registry entry) when dropped.
pub struct Control {
    socket: PathBuf,
    link: Option<PathBuf>,
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        if let Some(l) = &self.link {
            let _ = std::fs::remove_file(l);
        }
    }
}

impl Control {
    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// Drop registry links whose socket is gone (daemons killed without unmounting).
fn prune_registry(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let dangling = std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink())
            && std::fs::metadata(&p).is_err();
        if dangling {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// Bind a listening socket at `socket` that is 0600 from the moment it exists there:
/// bound in a private 0700 directory beside it (through /proc/self/fd, so the temporary
/// path's length does not matter), chmod'ed, then renamed into place.
fn bind_private(socket: &Path) -> io::Result<UnixListener> {
    let parent = socket.parent().unwrap_or(Path::new("/"));
    let name = socket.file_name().unwrap_or_default();
    let private = parent.join(format!(".strata-sock.{}", std::process::id()));
    // A directory of that name is a leftover of a killed daemon with our pid.
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let r = (|| {
        let dir = std::fs::File::open(&private)?;
        let inner = PathBuf::from(format!("/proc/self/fd/{}/s", dir.as_raw_fd()));
        let listener = UnixListener::bind(&inner)?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
        // Replaces a socket left by a daemon that died (nothing listens on it any more).
        std::fs::rename(private.join("s"), parent.join(name))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    r
}

/// What the control server answers from.
struct Server {
    union: Arc<Union>,
    stats: Arc<Stats>,
    tracer: Option<Arc<Tracer>>,
    mountpoint: PathBuf,
    /// Connections being served.
    conns: AtomicUsize,
    /// This daemon's uid: with root, the only peer allowed.
    owner: u32,
}

/// Bind the control socket for a mount at `mountpoint` and serve it on a thread.
pub fn start(
    union: Arc<Union>,
    stats: Arc<Stats>,
    tracer: Option<Arc<Tracer>>,
    mountpoint: &Path,
) -> io::Result<Control> {
    let uid = nix::unistd::geteuid().as_raw();
    let key = format!("{}.sock", mount_key(mountpoint));
    let registry = registry_dirs(uid).into_iter().find(|d| usable_dir(d, uid));
    let in_work = union
        .options()
        .workdir
        .as_ref()
        .filter(|_| union.writable())
        .map(|w| w.join("strata.sock"))
        .filter(|p| p.as_os_str().len() <= MAX_SOCK_PATH);
    let (socket, link) = match (in_work, &registry) {
        (Some(s), Some(r)) => (s, Some(r.join(&key))),
        (Some(s), None) => (s, None),
        (None, Some(r)) => (r.join(&key), None),
        (None, None) => {
            return Err(io::Error::other(
                "no directory for the control socket (tried the workdir, /run and /tmp)",
            ))
        }
    };
    let listener = bind_private(&socket)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", socket.display())))?;
    if let Some(r) = &registry {
        prune_registry(r);
    }
    if let Some(l) = &link {
        let _ = std::fs::remove_file(l);
        if let Err(e) = std::os::unix::fs::symlink(&socket, l) {
            tracing::warn!("cannot register the control socket at {}: {e}", l.display());
        }
    }
    let server = Arc::new(Server {
        union,
        stats,
        tracer,
        mountpoint: mountpoint.to_path_buf(),
        conns: AtomicUsize::new(0),
        owner: uid,
    });
    std::thread::Builder::new()
        .name("strata-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                server.accept(conn);
            }
        })?;
    tracing::debug!(socket = %socket.display(), "control socket listening");
    Ok(Control { socket, link })
}

/// Answer `msg` as a failure on `conn` and close it.
fn refuse(mut conn: UnixStream, msg: &str) {
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let mut buf = json!({"ok": false, "error": msg}).to_string().into_bytes();
    buf.push(b'\n');
    let _ = conn.write_all(&buf);
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

impl Server {
    /// Check a new connection's peer and the connection count, then serve it on a thread.
    fn accept(self: &Arc<Self>, conn: UnixStream) {
        match strata_sys::peer_uid(conn.as_fd()) {
            Ok(uid) if uid == 0 || uid == self.owner => {}
            Ok(uid) => {
                tracing::warn!(
                    uid,
                    "control socket: refused a connection from another user"
                );
                return refuse(
                    conn,
                    &format!(
                        "permission denied: uid {uid} is neither root nor the mount's owner ({})",
                        self.owner
                    ),
                );
            }
            Err(e) => return refuse(conn, &format!("cannot check the peer's credentials: {e}")),
        }
        if self.conns.fetch_add(1, Ordering::AcqRel) >= MAX_CONNS {
            self.conns.fetch_sub(1, Ordering::AcqRel);
            return refuse(
                conn,
                &format!("too many control connections (at most {MAX_CONNS} at once)"),
            );
        }
        let server = self.clone();
        let spawned = std::thread::Builder::new()
            .name("strata-control-conn".into())
            .spawn(move || {
                server.serve_conn(conn);
                server.conns.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            self.conns.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("control socket: cannot start a connection thread: {e}");
        }
    }

    fn serve_conn(&self, conn: UnixStream) {
        let _ = conn.set_read_timeout(Some(IDLE));
        let Ok(mut out) = conn.try_clone() else {
            return;
        };
        let mut input = BufReader::new(conn);
        let mut line = Vec::new();
        loop {
            line.clear();
            // One byte past the limit tells an over-long line from one that just fits.
            let limit = (MAX_LINE + 1) as u64;
            match (&mut input).take(limit).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if !line.ends_with(b"\n") && line.len() > MAX_LINE {
                tracing::warn!("control socket: refused a request line over {MAX_LINE} bytes");
                let msg = format!("request line too long (at most {MAX_LINE} bytes)");
                let mut buf = json!({"ok": false, "error": msg}).to_string().into_bytes();
                buf.push(b'\n');
                let _ = out.write_all(&buf);
                // The rest of that line cannot be told from a next request: close.
                return;
            }
            let text = String::from_utf8_lossy(&line);
            if text.trim().is_empty() {
                continue;
            }
            let resp = match serde_json::from_str::<Value>(&text) {
                Ok(req) => self.answer(&req),
                Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
            };
            let mut buf = resp.to_string().into_bytes();
            buf.push(b'\n');
            if out.write_all(&buf).is_err() {
                return;
            }
        }
    }

    fn answer(&self, req: &Value) -> Value {
        match req.get("op").and_then(Value::as_str) {
            Some("ping") => json!({
                "ok": true,
                "protocol": PROTOCOL,
                "pid": std::process::id(),
                "mountpoint": self.mountpoint.display().to_string(),
                "lowers": self.union.lowers.iter().map(|b| b.path.display().to_string()).collect::<Vec<_>>(),
                "upper": self.union.upper.as_ref().map(|b| b.path.display().to_string()),
            }),
            Some("stats") => {
                let trace = self.tracer.as_ref().map(|t| (t.events(), t.drops()));
                let mut snap = self.stats.snapshot(self.union.node_count(), trace);
                snap.compactions = self.union.compaction_stats();
                json!({"ok": true, "stats": snap})
            }
            Some("whence") => {
                let Some(p) = req.get("path").and_then(Value::as_str) else {
                    return json!({"ok": false, "error": "whence needs \"path\""});
                };
                match self.union.whence(p) {
                    Ok(w) => json!({"ok": true, "whence": w}),
                    Err(e) => json!({"ok": false, "error": e}),
                }
            }
            Some("remount") => remount_answer(&self.union, req),
            Some(other) => json!({"ok": false, "error": format!("unknown op '{other}'")}),
            None => json!({"ok": false, "error": "request needs \"op\""}),
        }
    }
}

/// The daemon's side of `strata mount -o remount` (fuse/remount.rs is the caller's): a `{"op":"remount","flags":[...]}` control request.
fn remount_answer(union: &Union, req: &Value) -> Value {
    let Some(list) = req.get("flags").and_then(Value::as_array) else {
        return json!({"ok": false, "error": "remount needs \"flags\""});
    };
    let words: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    let ro = words.contains(&"ro");
    if !union.set_read_only(ro) {
        return json!({"ok": false, "error": "no upperdir: the union stays read-only"});
    }
    union.atime.set(AtimePolicy::from_words(&words));
    tracing::info!("remounted: {}", words.join(","));
    json!({"ok": true})
}
