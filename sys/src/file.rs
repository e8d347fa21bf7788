//! Files: reflinks, fallocate, re-opening through /proc, statx and the inode-flag ioctls.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use crate::{check, owned};

/// Clone `src` into `dst` with FICLONE (reflink); fails where the filesystem cannot.
pub fn ficlone(dst: BorrowedFd<'_>, src: BorrowedFd<'_>) -> io::Result<()> {
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: FICLONE takes the source fd as its integer argument.
    check(unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) }).map(|_| ())
}

/// fallocate(2) with raw mode bits (nix's flag type does not cover every mode FUSE sends).
pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: i64, len: i64) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    check(unsafe { libc::fallocate(fd.as_raw_fd(), mode, offset, len) }).map(|_| ())
}

/// openat(2) with O_CLOEXEC, for re-opening through a /proc/self/fd path.
pub fn open_proc(path: &CStr, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: path is NUL-terminated; the result is adopted exactly once.
    let fd = check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0) })?;
    Ok(owned(fd))
}

/// The device (major, minor) of the filesystem an fd (O_PATH is fine) lies on, from the
/// inode the kernel already holds: AT_STATX_DONT_SYNC sends no request to a FUSE daemon,
/// so this cannot hang on a mount whose daemon is busy, stopping or gone.
pub fn statx_dev(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    // SAFETY: statx is plain old data; all-zero is a valid value.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let flags = libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_DONT_SYNC;
    // SAFETY: the path is a NUL-terminated empty string, st is valid for writing.
    check(unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            libc::STATX_BASIC_STATS,
            &mut st,
        )
    })?;
    Ok((st.stx_dev_major, st.stx_dev_minor))
}

/// FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (`chattr` flags): the kernel moves an `int` whatever
/// the `long` in their definitions says.
const FS_IOC_GETFLAGS: libc::c_ulong =
    nix::request_code_read!(b'f', 1, std::mem::size_of::<libc::c_long>()) as libc::c_ulong;
const FS_IOC_SETFLAGS: libc::c_ulong =
    nix::request_code_write!(b'f', 2, std::mem::size_of::<libc::c_long>()) as libc::c_ulong;
/// FS_IOC_FSGETXATTR / FS_IOC_FSSETXATTR on a `struct fsxattr`.
const FS_IOC_FSGETXATTR: libc::c_ulong =
    nix::request_code_read!(b'X', 31, FSXATTR_SIZE) as libc::c_ulong;
const FS_IOC_FSSETXATTR: libc::c_ulong =
    nix::request_code_write!(b'X', 32, FSXATTR_SIZE) as libc::c_ulong;
/// Size of `struct fsxattr`.
pub const FSXATTR_SIZE: usize = 28;

/// The inode flags of an open file (FS_IOC_GETFLAGS).
pub fn get_inode_flags(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: the kernel writes one int through the pointer, which is valid for it.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_GETFLAGS as _, &mut v) })?;
    Ok(v as u32)
}

/// Set the inode flags of an open file (FS_IOC_SETFLAGS).
pub fn set_inode_flags(fd: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    let v = flags as libc::c_int;
    // SAFETY: the kernel reads one int through the pointer, which is valid for it.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_SETFLAGS as _, &v) }).map(|_| ())
}

/// The `struct fsxattr` of an open file (FS_IOC_FSGETXATTR), as bytes.
pub fn get_fsxattr(fd: BorrowedFd<'_>) -> io::Result<[u8; FSXATTR_SIZE]> {
    let mut v = [0u32; FSXATTR_SIZE / 4];
    // SAFETY: the kernel writes FSXATTR_SIZE bytes; the buffer has them, aligned for u32.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSGETXATTR as _, v.as_mut_ptr()) })?;
    let mut out = [0u8; FSXATTR_SIZE];
    for (o, w) in out.chunks_exact_mut(4).zip(v) {
        o.copy_from_slice(&w.to_ne_bytes());
    }
    Ok(out)
}

/// Set the `struct fsxattr` of an open file (FS_IOC_FSSETXATTR) from its bytes.
pub fn set_fsxattr(fd: BorrowedFd<'_>, x: &[u8; FSXATTR_SIZE]) -> io::Result<()> {
    let mut v = [0u32; FSXATTR_SIZE / 4];
    for (w, i) in v.iter_mut().zip(x.chunks_exact(4)) {
        *w = u32::from_ne_bytes([i[0], i[1], i[2], i[3]]);
    }
    // SAFETY: the kernel reads FSXATTR_SIZE bytes from the buffer, which has them.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSSETXATTR as _, v.as_ptr()) }).map(|_| ())
}

/// The FUSE request codes of the ioctls strata serves (what the kernel puts in `cmd`).
pub mod ioctl_cmd {
    /// FS_IOC_GETFLAGS.
    pub const GETFLAGS: u32 = super::FS_IOC_GETFLAGS as u32;
    /// FS_IOC_SETFLAGS.
    pub const SETFLAGS: u32 = super::FS_IOC_SETFLAGS as u32;
    /// FS_IOC_FSGETXATTR.
    pub const FSGETXATTR: u32 = super::FS_IOC_FSGETXATTR as u32;
    /// FS_IOC_FSSETXATTR.
    pub const FSSETXATTR: u32 = super::FS_IOC_FSSETXATTR as u32;
}
