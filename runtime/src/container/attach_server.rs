//! The supervisor's side of `strata attach`: a unix socket in the container's directory
//! (mode 0600: only the owner may connect) that copies the container's output to every
//! attached client and their input to the container's stdin (its pipe or pty master).
//!
//! Frames, both ways: a kind byte, a big-endian u32 length, the payload. Server to client:
//! [`OUT`], [`ERR`] (output), [`EXIT`] (an i32 exit status, last). Client to server:
//! [`IN`] (input bytes), [`SIGNAL`] (an i32 signal number to send the container's command),
//! [`RESIZE`] (the terminal's size).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::{Ctx, Result};

/// Container stdout.
pub const OUT: u8 = 1;
/// Container stderr.
pub const ERR: u8 = 2;
/// The container's exit status; the last frame.
pub const EXIT: u8 = 3;
/// Client input for the container's stdin.
pub const IN: u8 = 1;
/// A signal the client forwards (sig-proxy).
pub const SIGNAL: u8 = 2;
/// The client terminal's size (rows, columns: two big-endian u16) for the container's pty.
pub const RESIZE: u8 = 3;

/// The socket's name in the container's directory.
pub const SOCKET: &str = "attach.sock";

/// Write one frame.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.push(kind);
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)
}

/// Read one frame; None at EOF.
pub fn read_frame(r: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).ok()?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    // A frame is at most one read of the container's output or the client's input.
    if len > 1 << 20 {
        return None;
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).ok()?;
    Some((head[0], payload))
}

/// A path to `dir`/attach.sock short enough for a socket address (108 bytes; a store's
/// container directory can be longer): through /proc/self/fd and an fd kept open on `dir`.
pub fn socket_path(dir: &Path) -> Result<(std::os::fd::OwnedFd, PathBuf)> {
    use std::os::fd::AsRawFd;
    let fd = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("cannot open {}", dir.display()))?;
    let p = PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", fd.as_raw_fd()));
    Ok((fd, p))
}

type Clients = Arc<Mutex<Vec<UnixStream>>>;

/// The attach socket of one run of a container.
pub struct Server {
    path: PathBuf,
    clients: Clients,
    input: Arc<Mutex<Option<File>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Listen on `dir`/attach.sock for the container whose command is `pid`; `input` is
    /// where client input goes (None: the container has no stdin; set later for a pty).
    pub fn listen(dir: &Path, pid: Pid, input: Option<File>) -> Result<Server> {
        let path = dir.join(SOCKET);
        let _ = std::fs::remove_file(&path);
        let (_dir_fd, short) = socket_path(dir)?;
        let listener =
            UnixListener::bind(&short).ctx(|| format!("cannot listen on {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .ctx(|| format!("cannot restrict {}", path.display()))?;
        let s = Server {
            path,
            clients: Arc::new(Mutex::new(Vec::new())),
            input: Arc::new(Mutex::new(input)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (clients, input, stop) = (s.clients.clone(), s.input.clone(), s.stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                // A client that stops reading must not hold up the container's output.
                let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
                let Ok(reader) = conn.try_clone() else {
                    continue;
                };
                if let Ok(mut c) = clients.lock() {
                    c.push(conn);
                }
                let input = input.clone();
                std::thread::spawn(move || serve_input(reader, pid, &input));
            }
        });
        Ok(s)
    }

    /// Send client input to `f` from now on (the pty master, once it exists).
    pub fn set_input(&self, f: File) {
        if let Ok(mut i) = self.input.lock() {
            *i = Some(f);
        }
    }

    /// A writer copying one output stream (`OUT` or `ERR`) to the attached clients.
    pub fn writer(&self, kind: u8) -> Box<dyn Write + Send> {
        Box::new(Broadcast {
            clients: self.clients.clone(),
            kind,
        })
    }

    /// Tell the clients the container exited with `code`, and stop listening.
    pub fn finish(self, code: i32) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(mut c) = self.clients.lock() {
            for mut s in c.drain(..) {
                let _ = write_frame(&mut s, EXIT, &code.to_be_bytes());
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        // Wakes the accept loop, which then sees `stop`.
        if let Ok((_dir_fd, short)) = self
            .path
            .parent()
            .map_or_else(|| Err(crate::err!("no directory")), socket_path)
        {
            let _ = UnixStream::connect(&short);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copy one client's input frames to the container; forward its signals.
fn serve_input(mut conn: UnixStream, pid: Pid, input: &Mutex<Option<File>>) {
    while let Some((kind, payload)) = read_frame(&mut conn) {
        match kind {
            IN => {
                let Ok(mut i) = input.lock() else { break };
                if let Some(f) = i.as_mut() {
                    let _ = f.write_all(&payload);
                }
            }
            RESIZE if payload.len() == 4 => {
                let ws = libc::winsize {
                    ws_row: u16::from_be_bytes([payload[0], payload[1]]),
                    ws_col: u16::from_be_bytes([payload[2], payload[3]]),
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                let Ok(i) = input.lock() else { break };
                if let Some(f) = i.as_ref() {
                    use std::os::fd::AsFd;
                    let _ = strata_sys::set_winsize(f.as_fd(), &ws);
                }
            }
            SIGNAL if payload.len() == 4 => {
                let n = i32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                if let Ok(sig) = Signal::try_from(n) {
                    let _ = kill(pid, sig);
                }
            }
            _ => {}
        }
    }
}

struct Broadcast {
    clients: Clients,
    kind: u8,
}

impl Write for Broadcast {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut c) = self.clients.lock() {
            // A client that left (or stalled past the timeout) is dropped.
            c.retain_mut(|s| write_frame(s, self.kind, buf).is_ok());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
