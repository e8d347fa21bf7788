//! Thin syscall wrappers: every call returns `Result<_, Errno>` so that outcomes on two
//! mounts can be compared errno for errno. All `unsafe` of the harness lives here.

use nix::errno::Errno;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Result of one syscall: the value or the errno.
pub type R<T> = Result<T, Errno>;

/// A path as a C string (test paths never contain NUL bytes).
pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("string without NUL")
}

fn cvt(r: libc::c_int) -> R<libc::c_int> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: isize) -> R<usize> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as usize)
    }
}

pub fn open(p: &Path, flags: libc::c_int, mode: libc::mode_t) -> R<OwnedFd> {
    let c = cpath(p);
    let fd = cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat2(dirfd, path, how)` with the given resolve flags (RESOLVE_IN_ROOT, ...).
pub fn openat2(
    dir: &OwnedFd,
    path: &str,
    flags: libc::c_int,
    mode: libc::mode_t,
    resolve: u64,
) -> R<OwnedFd> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve,
    };
    let c = cstr(path);
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

pub fn lstat(p: &Path) -> R<libc::stat> {
    let c = cpath(p);
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::lstat(c.as_ptr(), &mut st) })?;
    Ok(st)
}

pub fn stat(p: &Path) -> R<libc::stat> {
    let c = cpath(p);
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::stat(c.as_ptr(), &mut st) })?;
    Ok(st)
}

pub fn fstat(fd: &OwnedFd) -> R<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

pub fn read_all(fd: &OwnedFd) -> R<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n =
            cvt_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

pub fn pread(fd: &OwnedFd, len: usize, off: u64) -> R<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let n = cvt_size(unsafe {
        libc::pread(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            len,
            off as libc::off_t,
        )
    })?;
    buf.truncate(n);
    Ok(buf)
}

/// Write all of `data` at `off` (short writes are retried).
pub fn pwrite_all(fd: &OwnedFd, data: &[u8], off: u64) -> R<usize> {
    let mut done = 0;
    while done < data.len() {
        let n = cvt_size(unsafe {
            libc::pwrite(
                fd.as_raw_fd(),
                data[done..].as_ptr().cast(),
                data.len() - done,
                (off + done as u64) as libc::off_t,
            )
        })?;
        if n == 0 {
            return Err(Errno::EIO);
        }
        done += n;
    }
    Ok(done)
}

/// Write all of `data` at the current offset (O_APPEND files).
pub fn write_all(fd: &OwnedFd, data: &[u8]) -> R<usize> {
    let mut done = 0;
    while done < data.len() {
        let n = cvt_size(unsafe {
            libc::write(
                fd.as_raw_fd(),
                data[done..].as_ptr().cast(),
                data.len() - done,
            )
        })?;
        if n == 0 {
            return Err(Errno::EIO);
        }
        done += n;
    }
    Ok(done)
}

pub fn fsync(fd: &OwnedFd) -> R<()> {
    cvt(unsafe { libc::fsync(fd.as_raw_fd()) }).map(drop)
}

pub fn truncate(p: &Path, len: u64) -> R<()> {
    let c = cpath(p);
    cvt(unsafe { libc::truncate(c.as_ptr(), len as libc::off_t) }).map(drop)
}

pub fn ftruncate(fd: &OwnedFd, len: u64) -> R<()> {
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) }).map(drop)
}

pub fn unlink(p: &Path) -> R<()> {
    let c = cpath(p);
    cvt(unsafe { libc::unlink(c.as_ptr()) }).map(drop)
}

pub fn rmdir(p: &Path) -> R<()> {
    let c = cpath(p);
    cvt(unsafe { libc::rmdir(c.as_ptr()) }).map(drop)
}

pub fn mkdir(p: &Path, mode: u32) -> R<()> {
    let c = cpath(p);
    cvt(unsafe { libc::mkdir(c.as_ptr(), mode as libc::mode_t) }).map(drop)
}

pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;

pub fn rename2(a: &Path, b: &Path, flags: u32) -> R<()> {
    let (ca, cb) = (cpath(a), cpath(b));
    cvt(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            flags as libc::c_uint,
        )
    })
    .map(drop)
}

pub fn link(existing: &Path, new: &Path) -> R<()> {
    let (ca, cb) = (cpath(existing), cpath(new));
    cvt(unsafe { libc::link(ca.as_ptr(), cb.as_ptr()) }).map(drop)
}

pub fn symlink(target: &str, p: &Path) -> R<()> {
    let (ct, cp) = (cstr(target), cpath(p));
    cvt(unsafe { libc::symlink(ct.as_ptr(), cp.as_ptr()) }).map(drop)
}

pub fn mknod(p: &Path, mode: u32, major: u32, minor: u32) -> R<()> {
    let c = cpath(p);
    cvt(unsafe {
        libc::mknod(
            c.as_ptr(),
            mode as libc::mode_t,
            libc::makedev(major, minor),
        )
    })
    .map(drop)
}

pub fn readlink(p: &Path) -> R<Vec<u8>> {
    let c = cpath(p);
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    let n = cvt_size(unsafe { libc::readlink(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
    buf.truncate(n);
    Ok(buf)
}

pub fn chmod(p: &Path, mode: u32) -> R<()> {
    let c = cpath(p);
    cvt(unsafe { libc::chmod(c.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// fchmodat with AT_SYMLINK_NOFOLLOW (EOPNOTSUPP on a symlink, like the kernel's lchmod).
pub fn lchmod(p: &Path, mode: u32) -> R<()> {
    let c = cpath(p);
    cvt(unsafe {
        libc::fchmodat(
            libc::AT_FDCWD,
            c.as_ptr(),
            mode as libc::mode_t,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn lchown(p: &Path, uid: u32, gid: u32) -> R<()> {
    let c = cpath(p);
    cvt(unsafe { libc::lchown(c.as_ptr(), uid, gid) }).map(drop)
}

/// utimensat(AT_FDCWD, p, [atime, mtime], AT_SYMLINK_NOFOLLOW); times as (sec, nsec).
pub fn lutimens(p: &Path, atime: (i64, i64), mtime: (i64, i64)) -> R<()> {
    let c = cpath(p);
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    cvt(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn lsetxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> R<()> {
    let (c, n) = (cpath(p), cstr(name));
    cvt(unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
    .map(drop)
}

pub fn lgetxattr(p: &Path, name: &str) -> R<Vec<u8>> {
    let (c, n) = (cpath(p), cstr(name));
    let size =
        cvt_size(unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) })?;
    let mut buf = vec![0u8; size + 1];
    let got = cvt_size(unsafe {
        libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    })?;
    buf.truncate(got);
    Ok(buf)
}

pub fn llistxattr(p: &Path) -> R<Vec<String>> {
    let c = cpath(p);
    let size = cvt_size(unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) })?;
    let mut buf = vec![0u8; size + 1];
    let got =
        cvt_size(unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
    buf.truncate(got);
    Ok(buf
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

pub fn lremovexattr(p: &Path, name: &str) -> R<()> {
    let (c, n) = (cpath(p), cstr(name));
    cvt(unsafe { libc::lremovexattr(c.as_ptr(), n.as_ptr()) }).map(drop)
}

pub fn fallocate(fd: &OwnedFd, mode: i32, off: u64, len: u64) -> R<()> {
    cvt(unsafe { libc::fallocate(fd.as_raw_fd(), mode, off as libc::off_t, len as libc::off_t) })
        .map(drop)
}

pub fn lseek(fd: &OwnedFd, off: i64, whence: i32) -> R<i64> {
    let r = unsafe { libc::lseek(fd.as_raw_fd(), off as libc::off_t, whence) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as i64)
    }
}

pub fn statfs(p: &Path) -> R<libc::statfs> {
    let c = cpath(p);
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::statfs(c.as_ptr(), &mut st) })?;
    Ok(st)
}

pub fn access(p: &Path, mode: i32) -> R<()> {
    let c = cpath(p);
    cvt(unsafe { libc::access(c.as_ptr(), mode) }).map(drop)
}

pub fn copy_file_range(src: &OwnedFd, dst: &OwnedFd, len: usize) -> R<usize> {
    let r = unsafe {
        libc::copy_file_range(
            src.as_raw_fd(),
            std::ptr::null_mut(),
            dst.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            0,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as usize)
    }
}

pub fn flock(fd: &OwnedFd, op: i32) -> R<()> {
    cvt(unsafe { libc::flock(fd.as_raw_fd(), op) }).map(drop)
}

/// Directory entries (without `.` and `..`): (name, d_ino, d_type).
pub fn readdir(p: &Path) -> R<Vec<(String, u64, u8)>> {
    let c = cpath(p);
    let dir = unsafe { libc::opendir(c.as_ptr()) };
    if dir.is_null() {
        return Err(Errno::last());
    }
    let mut out = Vec::new();
    let result = loop {
        Errno::clear();
        let ent = unsafe { libc::readdir64(dir) };
        if ent.is_null() {
            let e = Errno::last_raw();
            break if e == 0 {
                Ok(())
            } else {
                Err(Errno::from_raw(e))
            };
        }
        let ent = unsafe { &*ent };
        let name = unsafe { CStr::from_ptr(ent.d_name.as_ptr()) };
        let name = String::from_utf8_lossy(name.to_bytes()).into_owned();
        if name != "." && name != ".." {
            out.push((name, ent.d_ino, ent.d_type));
        }
    };
    unsafe { libc::closedir(dir) };
    result.map(|()| out)
}

// ---- mounts and processes ----

pub fn mount(src: &str, target: &Path, fstype: &str, flags: libc::c_ulong, data: &str) -> R<()> {
    let (s, t, f, d) = (cstr(src), cpath(target), cstr(fstype), cstr(data));
    cvt(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr().cast()) })
        .map(drop)
}

pub fn umount2(target: &Path, flags: i32) -> R<()> {
    let t = cpath(target);
    cvt(unsafe { libc::umount2(t.as_ptr(), flags) }).map(drop)
}

pub fn kill(pid: i32, sig: i32) -> R<()> {
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

pub fn umask(mask: u32) -> u32 {
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// pwritev2(fd, [data], off, flags).
pub fn pwritev2(fd: &OwnedFd, data: &[u8], off: i64, flags: i32) -> R<usize> {
    let iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    cvt_size(unsafe { libc::pwritev2(fd.as_raw_fd(), &iov, 1, off, flags) })
}

/// Write `data` at offset 0 through a shared writable mapping of the first page, msync
/// and unmap.
pub fn mmap_write(fd: &OwnedFd, data: &[u8]) -> R<()> {
    let len = 4096usize;
    assert!(data.len() <= len);
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), p.cast::<u8>(), data.len());
        let r = cvt(libc::msync(p, len, libc::MS_SYNC));
        libc::munmap(p, len);
        r.map(drop)
    }
}

// File handles, inode flags, FIEMAP, poll, getdents (tests/handles.rs, tests/ext4_oracle.rs).
mod files;
pub use files::*;

mod dir;
pub use dir::Dir;
