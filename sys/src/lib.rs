//! strata-sys: the syscall wrappers that need `unsafe`, shared by strata-fs and
//! strata-runtime.
//!
//! This crate is the only place in strata allowed to use `unsafe` (every other crate is
//! under `#![deny(unsafe_code)]`); each function here is a direct call with its arguments
//! checked, its result turned into `io::Result` (or `nix::Result` where its callers speak
//! nix), and a `SAFETY:` note saying why it is sound. Grouped by what they touch:
//! - [`xattr`]: extended attributes by path (never following a final symlink) or by fd,
//!   and the /proc/self/fd paths that pin a resolved directory.
//! - [`file`]: reflinks, fallocate, re-opening through /proc, statx, inode flags.
//! - [`process`]: fork (unsafe: single-threaded callers only), exit, signal dispositions.
//! - [`tty`], [`net`]: terminals, ptys, loopback, fd passing and peer credentials.
//! - [`mount`]: open_tree and mount_setattr.
//! - [`seccomp`]: installing a filter compiled to BPF earlier.
//!
//! The wrappers are re-exported at the crate root, so callers write `strata_sys::fork()`.

pub mod file;
pub mod mount;
pub mod net;
pub mod process;
pub mod seccomp;
pub mod tty;
pub mod xattr;

pub use file::*;
pub use mount::*;
pub use net::*;
pub use process::*;
pub use tty::*;
pub use xattr::*;

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

pub(crate) fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

pub(crate) fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub(crate) fn check_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Adopt a raw fd returned by a syscall wrapper of this module.
pub(crate) fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: only called with fresh fds returned by successful syscalls.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
