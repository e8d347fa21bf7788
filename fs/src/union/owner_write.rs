//! Write access for a daemon that is not root.
//!
//! An unprivileged daemon owns the upper entries it makes, but owning a file does not let
//! it open it or set a `user.*` xattr on it when the mode lacks `u+rw` (a lower 0444 file
//! copied up by a chmod or touch, a 0406 file other users may write). The kernel has
//! already checked the caller (default_permissions), so where such a call fails with
//! EACCES on an upper entry the daemon owns, it gives itself `u+rw` for that one call and
//! puts the mode back, as ext4 lets the owner do all of this by chmod.

use crate::union::branch::open_in;
use nix::fcntl::OFlag;
use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use strata_sys as sys;

const OWNER_RW: u32 = libc::S_IRUSR | libc::S_IWUSR;

/// Run `f`; on EACCES, if `entry` (an fd of the entry itself, opened only then) is a
/// non-symlink owned by the daemon without `u+rw`, retry once with `u+rw` set.
pub fn with_owner_write<T>(
    entry: impl FnOnce() -> io::Result<OwnedFd>,
    mut f: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let first = f();
    match &first {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
        _ => return first,
    }
    let Ok(fd) = entry() else {
        return first;
    };
    let Ok(st) = nix::sys::stat::fstat(&fd) else {
        return first;
    };
    let kind = st.st_mode & libc::S_IFMT;
    if st.st_uid != nix::unistd::geteuid().as_raw()
        || st.st_mode & OWNER_RW == OWNER_RW
        || kind == libc::S_IFLNK
    {
        return first;
    }
    let mode = st.st_mode & 0o7777;
    if chmod_fd(fd.as_fd(), mode | OWNER_RW).is_err() {
        return first;
    }
    let r = f();
    if let Err(e) = chmod_fd(fd.as_fd(), mode) {
        // The entry stays u+w: wrong, but not unsafe; say so loudly.
        tracing::error!("mode {mode:o} not restored after a write by its owner: {e}");
    }
    r
}

/// chmod through the fd's /proc path (the fd may be O_PATH; the magic link is the entry
/// itself, never a symlink in a branch).
fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let p = sys::fd_path(fd)?;
    let p = std::path::Path::new(OsStr::from_bytes(p.as_bytes()));
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

/// [`open_in`] of an upper entry the daemon owns, even when its mode lacks `u+rw`.
pub fn open_in_owned(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: OFlag,
    mode: u32,
) -> io::Result<OwnedFd> {
    with_owner_write(
        || open_in(dir, name, OFlag::O_PATH, 0),
        || open_in(dir, name, flags, mode),
    )
}

/// An O_PATH fd of the entry at a /proc/self/fd/N/NAME path, final symlink not followed.
pub fn entry_at(path: &CStr) -> io::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(io::Error::from)
}
