//! Requests beyond the core set: attributes of an open directory that was removed or
//! replaced, inode flags (`lsattr`/`chattr`: FS_IOC_GETFLAGS/SETFLAGS and
//! FS_IOC_FSGETXATTR/FSSETXATTR, which the kernel forwards as FUSE ioctls), and poll.

use crate::types::{errno, Layer};
use crate::union::attr::Attr;
use crate::union::fs::Union;
use crate::union::inode::Placement;
use nix::fcntl::OFlag;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use strata_sys::{self as sys, ioctl_cmd};

/// Flags whose files strata can no longer rewrite in place (copy-up, delta blocks, its own
/// metadata): a file gets all its data in the upper before it takes one of them
/// (FS_IMMUTABLE_FL, FS_APPEND_FL).
const FROZEN: u32 = 0x10 | 0x20;
/// The same flags in `struct fsxattr`'s fsx_xflags (FS_XFLAG_IMMUTABLE, FS_XFLAG_APPEND).
const FROZEN_X: u32 = 0x8 | 0x10;

/// Whether strata serves ioctl `cmd` (all others are answered ENOTTY, as a plain file).
pub fn is_fileattr_ioctl(cmd: u32) -> bool {
    matches!(
        cmd,
        ioctl_cmd::GETFLAGS | ioctl_cmd::SETFLAGS | ioctl_cmd::FSGETXATTR | ioctl_cmd::FSSETXATTR
    )
}

/// The events a regular file is ready for: all of them at once, as a file on ext4 (whose
/// poll answer is the kernel's DEFAULT_POLLMASK).
pub fn poll_ready() -> u32 {
    (libc::POLLIN | libc::POLLOUT | libc::POLLRDNORM | libc::POLLWRNORM) as u32
}

impl Union {
    /// The branch directory an opendir of (`path`, `place`) holds on to, from the dirfd
    /// cache (the listing that follows uses the same fd): costs no syscall when cached.
    pub(crate) fn dir_keep_fd(&self, path: &Path, place: &Placement) -> Option<Arc<OwnedFd>> {
        let (layer, bpath) = self.attr_source(path, place).ok()?;
        self.dirfd(layer, &bpath).ok()
    }

    /// Attributes of an entry whose name is gone (rmdir, unlink, or replaced by a rename)
    /// without an open file handle: those of the branch directory an open directory handle
    /// holds, else of the upper inode kept by the node's pin; nlink 0, as ext4 and overlayfs
    /// report. ENOENT when neither holds it.
    pub(crate) fn getattr_removed(&self, ino: u64) -> io::Result<Attr> {
        let st = match self.handles.any_dir_of(ino) {
            Some(fd) => {
                let st = nix::sys::stat::fstat(fd.as_fd())?;
                if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                    return Err(errno(libc::ENOENT));
                }
                st
            }
            // No open handle (an O_PATH fd, a cwd, a racing stat): the inode kept for the
            // node when its last name went, if it was upper.
            None => {
                let nodes = self.nodes.read();
                let pin = nodes.get(ino).and_then(|n| n.pin.as_ref());
                nix::sys::stat::fstat(pin.ok_or_else(|| errno(libc::ENOENT))?.as_fd())?
            }
        };
        let mut a = self.attr_from(&st, ino);
        a.nlink = 0;
        Ok(a)
    }

    /// Open the upper file at `path` for an O_APPEND writer after a plain open was refused
    /// (`refused`) because the file is append-only (chattr +a): the writeback cache drops
    /// O_APPEND from upper opens, which such a file refuses. The handle is then served with
    /// direct I/O ([`Union::append_only_handle`]): the kernel places each write at the end
    /// and none goes through cached pages, which would be written back at page offsets.
    pub(crate) fn open_append_only(
        &self,
        path: &Path,
        flags: i32,
        refused: io::Error,
    ) -> io::Result<OwnedFd> {
        if flags & libc::O_APPEND == 0 || !self.writeback_cache() {
            return Err(refused);
        }
        self.open_upper_file(path, self.file_open_flags(flags) | OFlag::O_APPEND)
    }

    /// Whether handle `fh` was opened by [`Union::open_append_only`] (opened with
    /// O_APPEND under the writeback cache, which no other open does).
    pub fn append_only_handle(&self, fh: u64) -> bool {
        if !self.writeback_cache() {
            return false;
        }
        self.handles.file(fh).is_some_and(|f| {
            nix::fcntl::fcntl(f.file.as_fd(), nix::fcntl::FcntlArg::F_GETFL)
                .is_ok_and(|fl| fl & libc::O_APPEND != 0)
        })
    }

    /// Serve an inode-flag ioctl on node `ino` (opened as `fh` by the kernel for it):
    /// reads come from the branch entry that supplies the node's attributes, changes go to
    /// the upper copy, made first (with all its data for immutable and append-only).
    pub fn fileattr_ioctl(
        &self,
        ino: u64,
        fh: u64,
        dir: bool,
        cmd: u32,
        data: &[u8],
    ) -> io::Result<Vec<u8>> {
        match cmd {
            ioctl_cmd::GETFLAGS => {
                let f = self.fileattr_fd(ino, fh, dir, None)?;
                Ok(sys::get_inode_flags(f.as_fd())?.to_ne_bytes().to_vec())
            }
            ioctl_cmd::FSGETXATTR => {
                let f = self.fileattr_fd(ino, fh, dir, None)?;
                Ok(sys::get_fsxattr(f.as_fd())?.to_vec())
            }
            ioctl_cmd::SETFLAGS => {
                let b: [u8; 4] = data
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| errno(libc::EINVAL))?;
                let flags = u32::from_ne_bytes(b);
                let f = self.fileattr_fd(ino, fh, dir, Some(flags & FROZEN != 0))?;
                sys::set_inode_flags(f.as_fd(), flags)?;
                Ok(Vec::new())
            }
            ioctl_cmd::FSSETXATTR => {
                let x: [u8; sys::FSXATTR_SIZE] = data
                    .get(..sys::FSXATTR_SIZE)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| errno(libc::EINVAL))?;
                let xflags = u32::from_ne_bytes([x[0], x[1], x[2], x[3]]);
                let f = self.fileattr_fd(ino, fh, dir, Some(xflags & FROZEN_X != 0))?;
                sys::set_fsxattr(f.as_fd(), &x)?;
                Ok(Vec::new())
            }
            _ => Err(errno(libc::ENOTTY)),
        }
    }

    /// An fd of node `ino` to read its inode flags on (`change` None) or to change them
    /// on (`change` Some(frozen)). `frozen`: the change makes the file immutable or
    /// append-only, so its data is copied up whole first: a metadata-only copy or a delta
    /// could never be completed once the upper file refuses writes.
    fn fileattr_fd(
        &self,
        ino: u64,
        fh: u64,
        dir: bool,
        change: Option<bool>,
    ) -> io::Result<OwnedFd> {
        let flags = OFlag::O_RDONLY
            | OFlag::O_NONBLOCK
            | if dir {
                OFlag::O_DIRECTORY
            } else {
                OFlag::empty()
            };
        if change.is_some() && !self.writable() {
            return Err(errno(libc::EROFS));
        }
        if self.nodes.read().get(ino).is_some_and(|n| n.unlinked) {
            // No name left to open by: the file the kernel's handle holds.
            let f = self.file(fh)?;
            if change.is_some() && f.layer != Layer::Upper {
                return Err(errno(libc::EROFS));
            }
            return Ok(f.file.try_clone()?.into());
        }
        let Some(frozen) = change else {
            let (path, place) = self.node_info(ino)?;
            let (layer, bpath) = self.attr_source(&path, &place)?;
            return self.branch(layer)?.open_at(&bpath, flags, 0);
        };
        self.copy_up(ino, frozen && !dir)?;
        let (path, _) = self.node_info(ino)?;
        self.upper()?.open_at(&path, flags, 0)
    }
}
