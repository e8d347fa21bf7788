//! Whiteouts and opaque directories.
//!
//! Read in every branch, in all the formats in use: `.wh.NAME` files (OCI/AUFS), character
//! devices 0/0 (overlayfs), `.wh..wh..opq` files and the `trusted.overlay.opaque` /
//! `user.overlay.opaque` / `user.fuseoverlayfs.opaque` = `y` xattrs. strata writes only the
//! OCI form — `.wh.NAME` empty files and `.wh..wh..opq` — so that an upper directory is
//! already an OCI layer; a real character device 0/0 it stores carries the `device` mark in
//! its meta xattr.

use crate::union::branch::{open_in, stat_at};
use crate::union::meta::MetaStore;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use strata_sys as sys;

/// Prefix of a whiteout file.
pub const WH_PREFIX: &[u8] = b".wh.";
/// Name of the opaque-directory marker file.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Whether `name` is reserved for whiteout bookkeeping and never shown in the mount.
pub fn is_internal_name(name: &OsStr) -> bool {
    name.as_bytes().starts_with(WH_PREFIX)
}

/// `.wh.NAME` for NAME.
pub fn whiteout_name(name: &OsStr) -> OsString {
    let mut v = WH_PREFIX.to_vec();
    v.extend_from_slice(name.as_bytes());
    OsString::from_vec(v)
}

/// For a `.wh.NAME` entry, NAME (None for the opaque marker and for other names).
pub fn whited_out_name(entry: &OsStr) -> Option<&OsStr> {
    let b = entry.as_bytes();
    if entry == OPAQUE_MARKER {
        return None;
    }
    b.strip_prefix(WH_PREFIX).map(OsStr::from_bytes)
}

/// Whether a stat is an overlayfs-style whiteout (character device 0/0). strata's own
/// real 0/0 devices look the same: [`is_whiteout_entry`] tells them apart.
pub fn is_char_whiteout(st: &FileStat) -> bool {
    (st.st_mode & libc::S_IFMT) == libc::S_IFCHR && st.st_rdev == 0
}

/// Whether `name` in `dir`, stat'ed as `st`, is a whiteout: a character device 0/0
/// without the `device` mark strata puts on a real one (docs/format.md).
pub fn is_whiteout_entry(
    meta: &MetaStore,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    st: &FileStat,
) -> io::Result<bool> {
    if !is_char_whiteout(st) {
        return Ok(false);
    }
    let m = meta.read(&sys::proc_path(dir, name)?)?;
    Ok(!m.is_some_and(|m| m.device))
}

/// Whether directory `dir` has a `.wh.NAME` whiteout for `name`.
pub fn has_whiteout_file(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<bool> {
    let wh = whiteout_name(name);
    if wh.len() > 255 {
        return Ok(false);
    }
    match stat_at(dir, &wh) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the directory open as `dir` (an O_PATH fd) holds the `.wh..wh..opq` marker.
pub fn has_opaque_marker(dir: BorrowedFd<'_>) -> io::Result<bool> {
    match stat_at(dir, OsStr::new(OPAQUE_MARKER)) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the directory open as `dir` (an O_PATH fd) is opaque in any format.
pub fn dir_is_opaque(dir: BorrowedFd<'_>) -> io::Result<bool> {
    if has_opaque_marker(dir)? {
        return Ok(true);
    }
    // "/proc/self/fd/N/." names the directory itself, so l*xattr does not stop at the
    // magic link.
    let path = sys::proc_path(dir, OsStr::new("."))?;
    crate::union::lower_marks::opaque_listed(&path)
}

/// Create an empty file `name` in `dir` (a whiteout or the opaque marker).
fn create_marker(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match open_in(
        dir,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY,
        Mode::S_IRUSR.bits() | Mode::S_IWUSR.bits(),
    ) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Write a `.wh.NAME` whiteout for `name` into the upper directory `dir`.
pub fn create_whiteout(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let wh = whiteout_name(name);
    if wh.len() > 255 {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    create_marker(dir, &wh)
}

/// Remove the whiteout for `name` from the upper directory `dir`, if there is one.
pub fn remove_whiteout(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let wh = whiteout_name(name);
    if wh.len() > 255 {
        return Ok(());
    }
    match nix::unistd::unlinkat(dir, wh.as_os_str(), nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Mark the upper directory open as `dir` opaque.
pub fn make_opaque(dir: impl AsFd) -> io::Result<()> {
    create_marker(dir.as_fd(), OsStr::new(OPAQUE_MARKER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_internal_name(OsStr::new(".wh.foo")));
        assert!(!is_internal_name(OsStr::new(".whx")));
        assert_eq!(
            whited_out_name(OsStr::new(".wh.foo")),
            Some(OsStr::new("foo"))
        );
        assert_eq!(whited_out_name(OsStr::new(OPAQUE_MARKER)), None);
        assert_eq!(whited_out_name(OsStr::new("foo")), None);
        assert_eq!(whiteout_name(OsStr::new("a")), OsString::from(".wh.a"));
    }
}
