//! Extended attributes; strata's and overlayfs's own never show through the mount.

use crate::types::errno;
use crate::union::fs::Union;
use crate::union::inode::split;
use crate::union::meta::is_internal_xattr;
use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use strata_sys as sys;

/// The control xattr behind `strata compact`.
pub const COMPACT_XATTR: &str = "user.strata.compact";

impl Union {
    /// Call `f` with the /proc path of the branch entry that holds node `ino`'s attributes.
    /// The path names the parent's fd, so it is only good while that fd is held: the
    /// dirfd cache may evict and close it any time, and a path outliving it reached
    /// whatever file reused the fd number (ENOTDIR, or another file's xattrs).
    fn with_xattr_path<T>(
        &self,
        ino: u64,
        f: impl FnOnce(&CStr) -> io::Result<T>,
    ) -> io::Result<T> {
        let (path, place) = self.node_info(ino)?;
        let (layer, bpath) = self.attr_source(&path, &place)?;
        if bpath.as_os_str().is_empty() {
            return f(&sys::proc_path(
                self.branch(layer)?.root(),
                OsStr::new("."),
            )?);
        }
        let (pp, name) = split(&bpath)?;
        let d = self.dirfd(layer, &pp)?;
        f(&sys::proc_path(d.as_fd(), &name)?)
    }

    /// ENOSYS under noxattrs=1 (fuse-overlayfs's answer; the kernel then answers
    /// EOPNOTSUPP itself for the rest of the mount's life).
    fn xattrs_allowed(&self) -> io::Result<()> {
        match self.opts.no_xattrs {
            true => Err(errno(libc::ENOSYS)),
            false => Ok(()),
        }
    }

    /// Value of xattr `name`.
    pub fn getxattr(&self, ino: u64, name: &OsStr) -> io::Result<Vec<u8>> {
        self.xattrs_allowed()?;
        if is_internal_xattr(name.as_bytes()) {
            return Err(errno(libc::ENODATA));
        }
        let v = match self.with_xattr_path(ino, |p| sys::lgetxattr(p, name)) {
            // The kernel reads ACLs for its permission checks: a branch without them has
            // none (EOPNOTSUPP would fail the check itself).
            Err(e)
                if e.raw_os_error() == Some(libc::EOPNOTSUPP)
                    && crate::union::acl::is_acl_name(name.as_bytes()) =>
            {
                None
            }
            r => r?,
        };
        v.map(|v| self.acl_shown(name, v))
            .ok_or_else(|| errno(libc::ENODATA))
    }

    /// NUL-separated xattr names.
    pub fn listxattr(&self, ino: u64) -> io::Result<Vec<u8>> {
        self.xattrs_allowed()?;
        let mut out = Vec::new();
        for n in self.with_xattr_path(ino, sys::llistxattr)? {
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
        self.xattrs_allowed()?;
        if name.as_bytes() == COMPACT_XATTR.as_bytes() {
            return self.compact(ino);
        }
        if is_internal_xattr(name.as_bytes()) {
            return Err(errno(libc::EPERM));
        }
        if !self.writable() {
            return Err(errno(libc::EROFS));
        }
        let value = self.acl_stored(name, value)?;
        self.copy_up(ino, false)?;
        self.with_xattr_path(ino, |p| sys::lsetxattr(p, name, &value, flags))
    }

    /// Remove xattr `name` (copies up metadata first).
    pub fn removexattr(&self, ino: u64, name: &OsStr) -> io::Result<()> {
        self.xattrs_allowed()?;
        if is_internal_xattr(name.as_bytes()) {
            return Err(errno(libc::ENODATA));
        }
        if !self.writable() {
            return Err(errno(libc::EROFS));
        }
        // Removing an absent xattr must not copy anything up.
        self.getxattr(ino, name)?;
        self.copy_up(ino, false)?;
        self.with_xattr_path(ino, |p| sys::lremovexattr(p, name))
    }
}
