//! Extended attributes; strata's and overlayfs's own never show through the mount.

use crate::copyup::split;
use crate::meta::is_internal_xattr;
use crate::sys;
use crate::union::{errno, Union};
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

/// The control xattr behind `strata compact`.
pub const COMPACT_XATTR: &str = "user.strata.compact";

impl Union {
    /// /proc path of the branch entry that holds node `ino`'s attributes.
    fn xattr_path(&self, ino: u64) -> io::Result<CString> {
        let (path, place) = self.node_info(ino)?;
        let (layer, bpath) = self.attr_source(&path, &place)?;
        if bpath.as_os_str().is_empty() {
            return sys::proc_path(self.branch(layer)?.root(), OsStr::new("."));
        }
        let (pp, name) = split(&bpath)?;
        let d = self.dirfd(layer, &pp)?;
        sys::proc_path(d.as_fd(), &name)
    }

    /// Value of xattr `name`.
    pub fn getxattr(&self, ino: u64, name: &OsStr) -> io::Result<Vec<u8>> {
        if is_internal_xattr(name.as_bytes()) {
            return Err(errno(libc::ENODATA));
        }
        sys::lgetxattr(&self.xattr_path(ino)?, name)?.ok_or_else(|| errno(libc::ENODATA))
    }

    /// NUL-separated xattr names.
    pub fn listxattr(&self, ino: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        for n in sys::llistxattr(&self.xattr_path(ino)?)? {
            if !is_internal_xattr(&n) {
                out.extend_from_slice(&n);
                out.push(0);
            }
        }
        Ok(out)
    }

    /// Set xattr `name` (copies up metadata first). Setting `user.strata.compact` asks for
    /// the file's delta to be made whole (what `strata compact` does).
    pub fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
        if name.as_bytes() == COMPACT_XATTR.as_bytes() {
            return self.compact(ino);
        }
        if is_internal_xattr(name.as_bytes()) {
            return Err(errno(libc::EPERM));
        }
        if !self.writable() {
            return Err(errno(libc::EROFS));
        }
        self.copy_up(ino, false)?;
        sys::lsetxattr(&self.xattr_path(ino)?, name, value, flags)
    }

    /// Remove xattr `name` (copies up metadata first).
    pub fn removexattr(&self, ino: u64, name: &OsStr) -> io::Result<()> {
        if is_internal_xattr(name.as_bytes()) {
            return Err(errno(libc::ENODATA));
        }
        if !self.writable() {
            return Err(errno(libc::EROFS));
        }
        // Removing an absent xattr must not copy anything up.
        self.getxattr(ino, name)?;
        self.copy_up(ino, false)?;
        sys::lremovexattr(&self.xattr_path(ino)?, name)
    }
}
