//! Thin wrappers over the syscalls that neither std nor nix cover safely.
//!
//! This is the only module of strata-fs allowed to use `unsafe`; every function here is a
//! direct call with its arguments checked and its result turned into `io::Result`.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// A path naming entry `name` inside the directory open as `dir`, through /proc/self/fd.
///
/// `l*xattr` on it acts on the entry itself (no final symlink is followed) while the
/// directory part cannot be redirected: it is the magic link of an fd we resolved safely.
pub fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<CString> {
    let mut v = format!("/proc/self/fd/{}", dir.as_raw_fd()).into_bytes();
    if !name.is_empty() {
        v.push(b'/');
        v.extend_from_slice(name.as_bytes());
    }
    CString::new(v).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The /proc/self/fd path of an open fd itself (a magic link: use it with calls that
/// follow symlinks; for l*xattr on a directory use `proc_path(fd, ".")`).
pub fn fd_path(fd: BorrowedFd<'_>) -> io::Result<CString> {
    proc_path(fd, OsStr::new(""))
}

/// Largest xattr value the kernel hands out (XATTR_SIZE_MAX).
const XATTR_SIZE_MAX: usize = 65536;

/// Read an xattr value of any size with `get(buf, len)` (a getxattr-family call): first
/// with a small buffer, then, on ERANGE, sized by a 0-length query, retried while the
/// value keeps growing under us, never past XATTR_SIZE_MAX. Ok(None) when it is absent.
fn get_sized(
    mut get: impl FnMut(*mut libc::c_void, usize) -> libc::ssize_t,
) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    // Bounded: each retry follows a size query; the value can only grow so often.
    for _ in 0..8 {
        let r = get(buf.as_mut_ptr().cast(), buf.len());
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < XATTR_SIZE_MAX => {
                let need = check_size(get(std::ptr::null_mut(), 0))?;
                buf.resize(need.clamp(buf.len() + 1, XATTR_SIZE_MAX), 0);
            }
            _ => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ERANGE))
}

/// Read an xattr of `path` without following a final symlink; Ok(None) when it is absent.
pub fn lgetxattr(path: &CStr, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let cname = cstr(name)?;
    // SAFETY: path and name are NUL-terminated; get_sized passes a buffer valid for the
    // length given (or null with length 0, a size query that writes nothing).
    get_sized(|buf, len| unsafe { libc::lgetxattr(path.as_ptr(), cname.as_ptr(), buf, len) })
}

/// Read an xattr of an open (not O_PATH) fd; Ok(None) when it is absent or the
/// filesystem has no xattrs.
pub fn fgetxattr(fd: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let cname = cstr(name)?;
    // SAFETY: as in lgetxattr; fd is a valid open descriptor for the call.
    let r =
        get_sized(|buf, len| unsafe { libc::fgetxattr(fd.as_raw_fd(), cname.as_ptr(), buf, len) });
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(None),
        r => r,
    }
}

/// Set an xattr on an open (not O_PATH) fd.
pub fn fsetxattr(fd: BorrowedFd<'_>, name: &OsStr, value: &[u8]) -> io::Result<()> {
    let cname = cstr(name)?;
    // SAFETY: pointers are valid for the lengths given.
    check(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(|_| ())
}

/// Remove an xattr from an open (not O_PATH) fd.
pub fn fremovexattr(fd: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let cname = cstr(name)?;
    // SAFETY: name is NUL-terminated.
    check(unsafe { libc::fremovexattr(fd.as_raw_fd(), cname.as_ptr()) }).map(|_| ())
}

/// Set an xattr on `path` without following a final symlink.
pub fn lsetxattr(path: &CStr, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
    let cname = cstr(name)?;
    // SAFETY: pointers are valid for the lengths given.
    check(unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
    .map(|_| ())
}

/// Remove an xattr from `path` without following a final symlink.
pub fn lremovexattr(path: &CStr, name: &OsStr) -> io::Result<()> {
    let cname = cstr(name)?;
    // SAFETY: both strings are NUL-terminated.
    check(unsafe { libc::lremovexattr(path.as_ptr(), cname.as_ptr()) }).map(|_| ())
}

/// List the xattr names of `path` (without following a final symlink).
pub fn llistxattr(path: &CStr) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let r = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(buf
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(<[u8]>::to_vec)
                .collect());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ERANGE) && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if e.raw_os_error() == Some(libc::ENOTSUP) {
            return Ok(Vec::new());
        }
        return Err(e);
    }
}

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

/// Which side of a fork we are on.
pub enum Forked {
    /// In the parent, with the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// fork(2). Only call while the process has a single thread.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the caller guarantees that no other thread exists, so the child's copy of the
    // address space holds no lock owned by a vanished thread.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Duplicate `fd` onto the standard stream number `target` (0, 1 or 2).
pub fn dup_onto_stdio(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    if !(0..=2).contains(&target) {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: dup2 onto a standard stream number; the old stream is replaced on purpose.
    check(unsafe { libc::dup2(fd.as_raw_fd(), target) }).map(|_| ())
}

/// Adopt a raw fd returned by a syscall wrapper of this module.
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: only called with fresh fds returned by successful syscalls.
    unsafe { OwnedFd::from_raw_fd(fd) }
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

/// Receive one fd passed with SCM_RIGHTS on a unix socket (fusermount3's `_FUSE_COMMFD`
/// protocol: one byte of data carrying one fd).
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = loop {
        match recvmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => break m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut got = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // Every fd received is ours now: adopt them all so none leaks.
                let fd = owned(fd);
                got.get_or_insert(fd);
            }
        }
    }
    got.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no fd received"))
}

/// The uid of the process at the other end of a connected unix socket (SO_PEERCRED).
pub fn peer_uid(sock: BorrowedFd<'_>) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred is a valid ucred and len its size, as SO_PEERCRED expects.
    check(unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(cred.uid)
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

/// Mount attribute bits of mount_setattr(2) (linux/mount.h).
pub mod mount_attr {
    /// The atime field: set it to one of the three values below.
    pub const ATIME_MASK: u64 = 0x70;
    /// relatime (the value 0 of the atime field).
    pub const RELATIME: u64 = 0;
    /// noatime.
    pub const NOATIME: u64 = 0x10;
    /// strictatime.
    pub const STRICTATIME: u64 = 0x20;
    /// nodiratime (a bit of its own).
    pub const NODIRATIME: u64 = 0x80;
}

/// A detached private copy of the mount at `path` (open_tree(OPEN_TREE_CLONE)), rooted at
/// `path`: files opened through it live on a mount of their own, whose flags strata sets.
pub fn clone_mount(path: &std::path::Path) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let p = cstr(path.as_os_str())?;
    // SAFETY: p is a valid NUL-terminated string; the call returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// mount_setattr(2) on the mount `fd` is the root of: set `set`, clear `clear`.
pub fn mount_setattr(fd: BorrowedFd<'_>, set: u64, clear: u64) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: the fd is open, the path is a valid empty string (AT_EMPTY_PATH), and attr
    // is a live struct of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
