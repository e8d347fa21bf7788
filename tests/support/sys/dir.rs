//! An open directory and the *at() calls relative to it (part of the harness's `sys` module, where all its `unsafe` lives).

use super::*;

/// An open directory: operations relative to it (the *at() calls) never make the
/// kernel look its path up again, so a daemon is asked about (this dir's inode, name).
pub struct Dir {
    pub fd: OwnedFd,
}

impl Dir {
    pub fn open(p: &Path) -> R<Dir> {
        open(p, libc::O_RDONLY | libc::O_DIRECTORY, 0).map(|fd| Dir { fd })
    }

    fn c(name: &str) -> CString {
        cstr(name)
    }

    /// openat(dir, name, flags | O_NOFOLLOW).
    pub fn openat(&self, name: &str, flags: libc::c_int, mode: u32) -> R<OwnedFd> {
        let c = Self::c(name);
        let fd = cvt(unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK,
                mode as libc::c_uint,
            )
        })?;
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub fn read(&self, name: &str) -> R<Vec<u8>> {
        let fd = self.openat(name, libc::O_RDONLY, 0)?;
        read_all(&fd)
    }

    pub fn write(&self, name: &str, off: u64, data: &[u8]) -> R<usize> {
        let fd = self.openat(name, libc::O_WRONLY, 0)?;
        pwrite_all(&fd, data, off)
    }

    pub fn put(&self, name: &str, data: &[u8]) -> R<usize> {
        let fd = self.openat(name, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644)?;
        pwrite_all(&fd, data, 0)
    }

    pub fn subdir(&self, name: &str) -> R<Dir> {
        self.openat(name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map(|fd| Dir { fd })
    }

    pub fn lstat(&self, name: &str) -> R<libc::stat> {
        let c = Self::c(name);
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        cvt(unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        Ok(st)
    }

    pub fn fstat(&self) -> R<libc::stat> {
        fstat(&self.fd)
    }

    pub fn mkdir(&self, name: &str, mode: u32) -> R<()> {
        let c = Self::c(name);
        cvt(unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) })
            .map(drop)
    }

    pub fn unlink(&self, name: &str) -> R<()> {
        let c = Self::c(name);
        cvt(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
    }

    pub fn rmdir(&self, name: &str) -> R<()> {
        let c = Self::c(name);
        cvt(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })
            .map(drop)
    }

    pub fn rename(&self, from: &str, to: &str) -> R<()> {
        let (a, b) = (Self::c(from), Self::c(to));
        cvt(unsafe {
            libc::renameat(
                self.fd.as_raw_fd(),
                a.as_ptr(),
                self.fd.as_raw_fd(),
                b.as_ptr(),
            )
        })
        .map(drop)
    }

    pub fn link(&self, from: &str, to: &str) -> R<()> {
        let (a, b) = (Self::c(from), Self::c(to));
        cvt(unsafe {
            libc::linkat(
                self.fd.as_raw_fd(),
                a.as_ptr(),
                self.fd.as_raw_fd(),
                b.as_ptr(),
                0,
            )
        })
        .map(drop)
    }

    pub fn symlink(&self, target: &str, name: &str) -> R<()> {
        let (t, n) = (Self::c(target), Self::c(name));
        cvt(unsafe { libc::symlinkat(t.as_ptr(), self.fd.as_raw_fd(), n.as_ptr()) }).map(drop)
    }

    pub fn mkfifo(&self, name: &str) -> R<()> {
        let c = Self::c(name);
        cvt(unsafe { libc::mkfifoat(self.fd.as_raw_fd(), c.as_ptr(), 0o644) }).map(drop)
    }

    pub fn chmod(&self, name: &str, mode: u32) -> R<()> {
        let c = Self::c(name);
        cvt(unsafe { libc::fchmodat(self.fd.as_raw_fd(), c.as_ptr(), mode as libc::mode_t, 0) })
            .map(drop)
    }

    pub fn chown(&self, name: &str, uid: u32, gid: u32) -> R<()> {
        let c = Self::c(name);
        cvt(unsafe {
            libc::fchownat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .map(drop)
    }

    pub fn setxattr(&self, name: &str, key: &str, value: &[u8]) -> R<()> {
        let fd = self.openat(name, libc::O_RDONLY, 0)?;
        let k = Self::c(key);
        cvt(unsafe {
            libc::fsetxattr(
                fd.as_raw_fd(),
                k.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        })
        .map(drop)
    }

    pub fn truncate(&self, name: &str, len: u64) -> R<()> {
        let fd = self.openat(name, libc::O_WRONLY, 0)?;
        ftruncate(&fd, len)
    }

    /// Entry names (without `.` and `..`), read through this open directory.
    pub fn names(&self) -> R<Vec<String>> {
        let dup = cvt(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
        let dir = unsafe { libc::fdopendir(dup) };
        if dir.is_null() {
            let e = Errno::last();
            unsafe { libc::close(dup) };
            return Err(e);
        }
        unsafe { libc::rewinddir(dir) };
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
                out.push(name);
            }
        };
        unsafe { libc::closedir(dir) };
        out.sort();
        result.map(|()| out)
    }
}
