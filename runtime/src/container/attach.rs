//! `strata attach`: connect the user's terminal (or pipes) to a detached container through
//! its supervisor's attach socket (see attach_server); detach keys (docker's Ctrl-P Ctrl-Q)
//! leave it running, signals are forwarded (sig-proxy) when it has no tty, and its exit
//! ends the attach with its exit status.

use std::io::{IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;

use nix::sys::signal::{SigSet, Signal};

use super::attach_server::{read_frame, write_frame, ERR, EXIT, IN, OUT, RESIZE, SIGNAL, SOCKET};
use crate::container::{self, Paths, Status};
use crate::err;
use crate::process::pty;
use crate::store::Store;
use crate::util::Result;

/// docker's default detach keys: Ctrl-P Ctrl-Q.
pub const DEFAULT_DETACH_KEYS: &[u8] = &[0x10, 0x11];

/// What `strata attach` connects.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// The key sequence that detaches (empty: none).
    pub detach_keys: Vec<u8>,
    /// Send our stdin to the container (when it was started with -i).
    pub stdin: bool,
    /// Forward SIGINT, SIGTERM ... to the container's command (without a tty).
    pub sig_proxy: bool,
}

/// Parse docker's `--detach-keys` format: comma-separated `ctrl-X` or single characters.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>> {
    let bad = || {
        err!("invalid detach keys {s:?}: use a comma-separated list of ctrl-<a-z@[\\]^_> or single characters, e.g. ctrl-p,ctrl-q")
    };
    let mut keys = Vec::new();
    for part in s.split(',') {
        let lower = part.to_ascii_lowercase();
        let b = match lower.strip_prefix("ctrl-") {
            Some(k) if k.len() == 1 => match k.as_bytes()[0] {
                c @ b'a'..=b'z' => c - b'a' + 1,
                b'@' => 0,
                b'[' => 27,
                b'\\' => 28,
                b']' => 29,
                b'^' => 30,
                b'_' => 31,
                _ => return Err(bad()),
            },
            Some(_) => return Err(bad()),
            None if part.len() == 1 => part.as_bytes()[0],
            None => return Err(bad()),
        };
        keys.push(b);
    }
    Ok(keys)
}

/// Finds the detach sequence in input, holding back a partial match as docker does.
#[derive(Debug)]
pub struct DetachMatcher {
    keys: Vec<u8>,
    held: usize,
}

impl DetachMatcher {
    /// A matcher for `keys` (empty: never detaches).
    pub fn new(keys: Vec<u8>) -> Self {
        DetachMatcher { keys, held: 0 }
    }

    /// Feed input; the bytes to pass on go to `out`; true once the sequence is complete.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &b in input {
            if self.keys.is_empty() {
                out.push(b);
                continue;
            }
            if b != self.keys[self.held] && self.held > 0 {
                out.extend_from_slice(&self.keys[..self.held]);
                self.held = 0;
            }
            if b == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    return true;
                }
            } else {
                out.push(b);
            }
        }
        false
    }
}

/// Send our terminal's size; false once the socket is gone.
fn send_size(w: &mut UnixStream) -> bool {
    use std::os::fd::AsFd;
    let Ok(ws) = strata_sys::get_winsize(std::io::stdin().as_fd()) else {
        return true;
    };
    let mut p = ws.ws_row.to_be_bytes().to_vec();
    p.extend_from_slice(&ws.ws_col.to_be_bytes());
    write_frame(w, RESIZE, &p).is_ok()
}

enum End {
    Exited(i32),
    Detached,
    Lost,
}

/// Attach to the running container `id`; its exit status, or None when detached.
pub fn attach(store: &Store, id: &str, o: &AttachOptions) -> Result<Option<i32>> {
    let cfg = container::load_config(store, id)?;
    let st = container::load_state(store, id)?;
    let not_running = || {
        err!(
            "cannot attach to {}: it is not running (start it first)",
            cfg.name
        )
    };
    if st.status != Status::Running || !container::init_alive(&st) {
        return Err(not_running());
    }
    let dir = Paths::new(store, id).dir;
    let path = dir.join(SOCKET);
    let (_dir_fd, short) = super::attach_server::socket_path(&dir)?;
    let sock = UnixStream::connect(&short).map_err(|e| {
        err!(
            "cannot attach to {}: {e} on {} (only containers started detached, with -d, can be attached)",
            cfg.name,
            path.display()
        )
    })?;
    let tty = cfg.process.tty;
    let (tx, rx) = mpsc::channel::<End>();
    // Signals are blocked before any thread starts, so that only the proxy thread takes them.
    if o.sig_proxy && !tty {
        let mut sigs = SigSet::empty();
        for s in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
        ] {
            sigs.add(s);
        }
        if sigs.thread_block().is_ok() {
            let mut w = sock.try_clone().map_err(|e| err!("cannot attach: {e}"))?;
            std::thread::spawn(move || {
                while let Ok(sig) = sigs.wait() {
                    if write_frame(&mut w, SIGNAL, &(sig as i32).to_be_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    }
    let on_terminal = tty && std::io::stdin().is_terminal();
    if on_terminal {
        let mut w = sock.try_clone().map_err(|e| err!("cannot attach: {e}"))?;
        send_size(&mut w);
        let mut winch = SigSet::empty();
        winch.add(Signal::SIGWINCH);
        if winch.thread_block().is_ok() {
            std::thread::spawn(move || {
                while winch.wait().is_ok() {
                    if !send_size(&mut w) {
                        break;
                    }
                }
            });
        }
    }
    let raw = on_terminal.then(pty::RawMode::enter);
    if o.stdin && cfg.process.interactive {
        let mut w = sock.try_clone().map_err(|e| err!("cannot attach: {e}"))?;
        let tx = tx.clone();
        let mut m = DetachMatcher::new(o.detach_keys.clone());
        // Not joined: it may sit in read(stdin) after the container exits.
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 4096];
            let mut out = Vec::new();
            while let Ok(n @ 1..) = stdin.read(&mut buf) {
                out.clear();
                let detach = m.feed(&buf[..n], &mut out);
                if !out.is_empty() && write_frame(&mut w, IN, &out).is_err() {
                    break;
                }
                if detach {
                    let _ = tx.send(End::Detached);
                    break;
                }
            }
        });
    }
    let mut r = sock.try_clone().map_err(|e| err!("cannot attach: {e}"))?;
    std::thread::spawn(move || {
        let (mut out, mut errs) = (std::io::stdout(), std::io::stderr());
        while let Some((kind, payload)) = read_frame(&mut r) {
            let _ = match kind {
                OUT => out.write_all(&payload).and_then(|()| out.flush()),
                ERR => errs.write_all(&payload).and_then(|()| errs.flush()),
                EXIT if payload.len() == 4 => {
                    let code = i32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    let _ = tx.send(End::Exited(code));
                    return;
                }
                _ => Ok(()),
            };
        }
        let _ = tx.send(End::Lost);
    });
    let end = rx.recv().unwrap_or(End::Lost);
    drop(raw);
    let _ = sock.shutdown(std::net::Shutdown::Both);
    match end {
        End::Exited(code) => Ok(Some(code)),
        End::Detached => Ok(None),
        // The supervisor went away without a word: the recorded exit, once there is one.
        End::Lost => Ok(Some(super::wait::wait(store, id)?)),
    }
}
