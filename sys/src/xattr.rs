//! Extended attributes: by path without following a final symlink (`l*xattr`), by open
//! fd (`f*xattr`), and the /proc/self/fd paths that name an entry of a directory fd.

use std::borrow::Cow;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::{check, check_size, cstr};

/// A path the `l*xattr` wrappers accept: a C string (such as a [`proc_path`]) or a `Path`.
pub trait XattrPath {
    /// The path as a NUL-terminated string (EINVAL if it holds a NUL).
    fn c_path(&self) -> io::Result<Cow<'_, CStr>>;
}

impl XattrPath for CStr {
    fn c_path(&self) -> io::Result<Cow<'_, CStr>> {
        Ok(Cow::Borrowed(self))
    }
}

impl XattrPath for CString {
    fn c_path(&self) -> io::Result<Cow<'_, CStr>> {
        Ok(Cow::Borrowed(self.as_c_str()))
    }
}

impl XattrPath for Path {
    fn c_path(&self) -> io::Result<Cow<'_, CStr>> {
        Ok(Cow::Owned(cstr(self.as_os_str())?))
    }
}

impl XattrPath for PathBuf {
    fn c_path(&self) -> io::Result<Cow<'_, CStr>> {
        self.as_path().c_path()
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
pub fn lgetxattr<P: XattrPath + ?Sized>(path: &P, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let path = path.c_path()?;
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
pub fn lsetxattr<P: XattrPath + ?Sized>(
    path: &P,
    name: &OsStr,
    value: &[u8],
    flags: i32,
) -> io::Result<()> {
    let path = path.c_path()?;
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
pub fn lremovexattr<P: XattrPath + ?Sized>(path: &P, name: &OsStr) -> io::Result<()> {
    let path = path.c_path()?;
    let cname = cstr(name)?;
    // SAFETY: both strings are NUL-terminated.
    check(unsafe { libc::lremovexattr(path.as_ptr(), cname.as_ptr()) }).map(|_| ())
}

/// List the xattr names of `path` (without following a final symlink).
pub fn llistxattr<P: XattrPath + ?Sized>(path: &P) -> io::Result<Vec<Vec<u8>>> {
    let path = path.c_path()?;
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
