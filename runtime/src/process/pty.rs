//! Terminals: allocating a pty for `-t`, raw mode on the user's terminal, copying bytes
//! both ways and forwarding window-size changes.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

use crate::util::{Ctx, Result};
use strata_sys as sys;

/// A fresh pty pair.
pub struct Pty {
    /// The side strata reads and writes.
    pub master: OwnedFd,
    /// The side the container uses as its terminal.
    pub slave: OwnedFd,
    /// /dev/pts/N of the slave.
    pub slave_path: PathBuf,
}

/// Open a pty sized like the terminal on stdin (if it is one).
pub fn open() -> Result<Pty> {
    let ws = sys::get_winsize(std::io::stdin().as_fd())
        .ok()
        .map(|w| nix::pty::Winsize {
            ws_row: w.ws_row,
            ws_col: w.ws_col,
            ws_xpixel: w.ws_xpixel,
            ws_ypixel: w.ws_ypixel,
        });
    let p = nix::pty::openpty(ws.as_ref(), None).ctx(|| "cannot allocate a pty")?;
    let slave_path = std::fs::read_link(format!("/proc/self/fd/{}", p.slave.as_raw_fd()))
        .ctx(|| "cannot find the pty's path")?;
    Ok(Pty {
        master: p.master,
        slave: p.slave,
        slave_path,
    })
}

/// Open a pty in the devpts instance whose `ptmx` is at `ptmx` (a container's
/// `/proc/PID/root/dev/pts/ptmx`), sized like the terminal on stdin: inside the container
/// the slave is `/dev/pts/N` of its own devpts, so `tty` and `ttyname` work there.
pub fn open_in(ptmx: &Path) -> Result<Pty> {
    use nix::fcntl::OFlag;
    let master = nix::fcntl::open(
        ptmx,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| {
        format!(
            "cannot open the container's pty multiplexer {}",
            ptmx.display()
        )
    })?;
    // The container owns its /dev: make sure this really is a devpts ptmx (5:2).
    let st = nix::sys::stat::fstat(master.as_fd()).ctx(|| "cannot stat the container's ptmx")?;
    let fs =
        nix::sys::statfs::fstatfs(master.as_fd()).ctx(|| "cannot stat the container's ptmx")?;
    let is_ptmx = (st.st_mode & libc::S_IFMT) == libc::S_IFCHR
        && nix::sys::stat::major(st.st_rdev) == 5
        && nix::sys::stat::minor(st.st_rdev) == 2;
    if !is_ptmx || fs.filesystem_type() != nix::sys::statfs::DEVPTS_SUPER_MAGIC {
        return Err(crate::err!(
            "{} is not a devpts ptmx: the container's /dev/pts was replaced; use exec without -t",
            ptmx.display()
        ));
    }
    let (slave, n) =
        sys::pty_peer(master.as_fd()).ctx(|| "cannot allocate a pty in the container")?;
    if let Ok(ws) = sys::get_winsize(std::io::stdin().as_fd()) {
        let _ = sys::set_winsize(master.as_fd(), &ws);
    }
    Ok(Pty {
        master,
        slave,
        slave_path: PathBuf::from(format!("/dev/pts/{n}")),
    })
}

/// Copy the window size of the terminal on stdin to the pty `master`.
pub fn forward_winsize(master: BorrowedFd<'_>) {
    if let Ok(ws) = sys::get_winsize(std::io::stdin().as_fd()) {
        let _ = sys::set_winsize(master, &ws);
    }
}

/// The user's terminal in raw mode; restored on drop.
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    /// Put stdin in raw mode if it is a terminal.
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

/// Copy from `from` to `to` on a thread until EOF or an error (EIO once the slave closes).
pub fn copy_thread(from: OwnedFd, mut to: Box<dyn Write + Send>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut from = File::from(from);
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                        break;
                    }
                }
            }
        }
    })
}
