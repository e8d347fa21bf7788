//! Terminals: window sizes, pty peers and the controlling terminal.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

/// The window size of the terminal on `fd`.
pub fn get_winsize(fd: BorrowedFd<'_>) -> nix::Result<libc::winsize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into ws.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCGWINSZ,
            &mut ws as *mut libc::winsize,
        )
    };
    Errno::result(r).map(|_| ws)
}

/// Set the window size of the terminal on `fd`.
pub fn set_winsize(fd: BorrowedFd<'_>, ws: &libc::winsize) -> nix::Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize from ws.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws as *const libc::winsize) };
    Errno::result(r).map(drop)
}

/// Unlock the pty master `master` and open its slave (TIOCGPTPEER), which lives in the
/// master's devpts instance; also the pty's number N (/dev/pts/N there).
pub fn pty_peer(master: BorrowedFd<'_>) -> nix::Result<(OwnedFd, u32)> {
    use std::os::fd::FromRawFd;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int.
    let r = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCSPTLCK,
            &unlock as *const libc::c_int,
        )
    };
    Errno::result(r)?;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int.
    let r = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTN,
            &mut n as *mut libc::c_uint,
        )
    };
    Errno::result(r)?;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor, owned right away.
    let fd = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let fd = Errno::result(fd)?;
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, n))
}

/// Make the terminal on `fd` the controlling terminal of this (session leader) process.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0 as libc::c_int) };
    Errno::result(r).map(drop)
}
