//! One operation on one path of a mount, returning an outcome that can be compared
//! between strata and overlayfs (`Result<_, Errno>`, never raw inode numbers).

use crate::mount::{self_check, Kind, Mounted};
use crate::sys::{self, R};
use nix::errno::Errno;
use std::path::Path;

/// File type, from st_mode or d_type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Char,
    Block,
    Socket,
    Unknown,
}

impl FileKind {
    pub fn from_mode(mode: u32) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::File,
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFCHR => FileKind::Char,
            libc::S_IFBLK => FileKind::Block,
            libc::S_IFSOCK => FileKind::Socket,
            _ => FileKind::Unknown,
        }
    }

    pub fn from_dtype(t: u8) -> Self {
        match t {
            libc::DT_REG => FileKind::File,
            libc::DT_DIR => FileKind::Dir,
            libc::DT_LNK => FileKind::Symlink,
            libc::DT_FIFO => FileKind::Fifo,
            libc::DT_CHR => FileKind::Char,
            libc::DT_BLK => FileKind::Block,
            libc::DT_SOCK => FileKind::Socket,
            _ => FileKind::Unknown,
        }
    }
}

/// The comparable part of `lstat`: no inode numbers, no times, no directory sizes
/// or link counts (those are filesystem-specific).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: FileKind,
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    /// Size of non-directories.
    pub size: Option<u64>,
    /// Link count of non-directories.
    pub nlink: Option<u64>,
    /// (major, minor) of device nodes.
    pub rdev: Option<(u32, u32)>,
}

impl Meta {
    pub fn from_stat(st: &libc::stat) -> Self {
        let kind = FileKind::from_mode(st.st_mode);
        let dir = kind == FileKind::Dir;
        Meta {
            kind,
            perm: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: (!dir).then_some(st.st_size as u64),
            nlink: (!dir).then_some(st.st_nlink),
            rdev: matches!(kind, FileKind::Char | FileKind::Block)
                .then(|| (libc::major(st.st_rdev), libc::minor(st.st_rdev))),
        }
    }
}

/// Comparable statfs facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsInfo {
    pub namemax: u64,
    pub bsize_positive: bool,
    pub blocks_positive: bool,
    pub free_le_blocks: bool,
}

/// xattr name prefixes that are implementation internals and must never show.
pub const INTERNAL_XATTRS: &[&str] = &["trusted.overlay.", "user.strata.", "user.overlay."];

/// Internal names that must never show in a listing.
pub fn is_internal_name(name: &str) -> bool {
    name.starts_with(".wh.")
}

impl Mounted {
    /// Raw lstat (for inode numbers and the like).
    pub fn lstat(&self, p: &str) -> R<libc::stat> {
        sys::lstat(&self.p(p))
    }

    /// Comparable lstat.
    pub fn stat(&self, p: &str) -> R<Meta> {
        self.lstat(p).map(|st| Meta::from_stat(&st))
    }

    /// Comparable stat, following symlinks.
    pub fn stat_follow(&self, p: &str) -> R<Meta> {
        sys::stat(&self.p(p)).map(|st| Meta::from_stat(&st))
    }

    pub fn ino(&self, p: &str) -> R<u64> {
        self.lstat(p).map(|st| st.st_ino)
    }

    pub fn exists(&self, p: &str) -> bool {
        self.lstat(p).is_ok()
    }

    /// (sec, nsec) of the mtime; compare only where a test set it explicitly.
    pub fn mtime(&self, p: &str) -> R<(i64, i64)> {
        self.lstat(p).map(|st| (st.st_mtime, st.st_mtime_nsec))
    }

    /// Whole content of a file (O_NONBLOCK so a fifo never blocks).
    pub fn read(&self, p: &str) -> R<Vec<u8>> {
        let fd = sys::open(&self.p(p), libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
        sys::read_all(&fd)
    }

    /// Content as text (lossy), for readable assertions.
    pub fn read_str(&self, p: &str) -> R<String> {
        self.read(p)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    pub fn pread(&self, p: &str, len: usize, off: u64) -> R<Vec<u8>> {
        let fd = sys::open(&self.p(p), libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
        sys::pread(&fd, len, off)
    }

    /// Sorted (name, type) listing of a directory. Checks, per entry, that d_ino equals
    /// lstat's st_ino and st_dev is the mount's, that no internal name shows, and that
    /// d_type agrees with lstat (panics naming the mount otherwise).
    pub fn readdir(&self, p: &str) -> R<Vec<(String, FileKind)>> {
        let dir = self.p(p);
        let entries = sys::readdir(&dir)?;
        let dev = sys::lstat(&self.mnt).map(|s| s.st_dev).ok();
        let mut out = Vec::new();
        for (name, d_ino, d_type) in entries {
            assert!(
                !is_internal_name(&name),
                "{}: internal name {name:?} visible in {}",
                self.label(),
                dir.display()
            );
            let kind = FileKind::from_dtype(d_type);
            if let Ok(st) = sys::lstat(&dir.join(&name)) {
                if d_ino != st.st_ino {
                    // Required of strata; overlayfs itself breaks it in corner cases
                    // (e.g. an upper dir planted without origin xattrs).
                    let msg = format!(
                        "{}: d_ino {d_ino} != st_ino {} for {}",
                        self.label(),
                        st.st_ino,
                        dir.join(&name).display()
                    );
                    assert!(self.kind != Kind::Strata || self_check(), "{msg}");
                    eprintln!("note: {msg}");
                }
                assert_eq!(
                    Some(st.st_dev),
                    dev,
                    "{}: st_dev of {} is not the mount's",
                    self.label(),
                    dir.join(&name).display()
                );
                assert_eq!(
                    kind,
                    FileKind::from_mode(st.st_mode),
                    "{}: d_type disagrees with lstat for {}",
                    self.label(),
                    dir.join(&name).display()
                );
            }
            out.push((name, kind));
        }
        out.sort();
        Ok(out)
    }

    /// Sorted names only.
    pub fn names(&self, p: &str) -> R<Vec<String>> {
        self.readdir(p)
            .map(|v| v.into_iter().map(|(n, _)| n).collect())
    }

    pub fn readlink(&self, p: &str) -> R<String> {
        sys::readlink(&self.p(p)).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// Sorted xattr names, without internals. On a strata mount internals must never
    /// show at all (asserted).
    pub fn xattrs(&self, p: &str) -> R<Vec<String>> {
        let names = sys::llistxattr(&self.p(p))?;
        let mut out = Vec::new();
        for n in names {
            let internal = INTERNAL_XATTRS.iter().any(|pre| n.starts_with(pre));
            if internal {
                assert!(
                    self.kind != Kind::Strata,
                    "strata: internal xattr {n:?} visible on {}",
                    self.p(p).display()
                );
                continue;
            }
            out.push(n);
        }
        out.sort();
        Ok(out)
    }

    /// Sorted (name, value) of the visible xattrs.
    pub fn xattr_values(&self, p: &str) -> R<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for n in self.xattrs(p)? {
            let v = self.getxattr(p, &n)?;
            out.push((n, v));
        }
        Ok(out)
    }

    pub fn getxattr(&self, p: &str, name: &str) -> R<Vec<u8>> {
        sys::lgetxattr(&self.p(p), name)
    }

    pub fn setxattr(&self, p: &str, name: &str, value: &[u8]) -> R<()> {
        sys::lsetxattr(&self.p(p), name, value, 0)
    }

    /// setxattr with XATTR_CREATE (1) or XATTR_REPLACE (2).
    pub fn setxattr_flags(&self, p: &str, name: &str, value: &[u8], flags: i32) -> R<()> {
        sys::lsetxattr(&self.p(p), name, value, flags)
    }

    pub fn removexattr(&self, p: &str, name: &str) -> R<()> {
        sys::lremovexattr(&self.p(p), name)
    }

    /// O_CREAT|O_EXCL a regular file.
    pub fn create(&self, p: &str, mode: u32) -> R<()> {
        sys::open(
            &self.p(p),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            mode as libc::mode_t,
        )
        .map(drop)
    }

    /// Create or truncate `p` and write `data` (like `echo > p`).
    pub fn put(&self, p: &str, data: impl AsRef<[u8]>) -> R<()> {
        let fd = sys::open(
            &self.p(p),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NONBLOCK,
            0o644,
        )?;
        sys::pwrite_all(&fd, data.as_ref(), 0).map(drop)
    }

    /// Write `data` at `off` into an existing file.
    pub fn write_at(&self, p: &str, off: u64, data: impl AsRef<[u8]>) -> R<usize> {
        let fd = sys::open(&self.p(p), libc::O_WRONLY | libc::O_NONBLOCK, 0)?;
        sys::pwrite_all(&fd, data.as_ref(), off)
    }

    pub fn append(&self, p: &str, data: impl AsRef<[u8]>) -> R<usize> {
        let fd = sys::open(
            &self.p(p),
            libc::O_WRONLY | libc::O_APPEND | libc::O_NONBLOCK,
            0,
        )?;
        sys::write_all(&fd, data.as_ref())
    }

    pub fn truncate(&self, p: &str, len: u64) -> R<()> {
        sys::truncate(&self.p(p), len)
    }

    pub fn unlink(&self, p: &str) -> R<()> {
        sys::unlink(&self.p(p))
    }

    pub fn rmdir(&self, p: &str) -> R<()> {
        sys::rmdir(&self.p(p))
    }

    pub fn mkdir(&self, p: &str, mode: u32) -> R<()> {
        sys::mkdir(&self.p(p), mode)
    }

    pub fn rename(&self, a: &str, b: &str) -> R<()> {
        sys::rename2(&self.p(a), &self.p(b), 0)
    }

    pub fn rename_noreplace(&self, a: &str, b: &str) -> R<()> {
        sys::rename2(&self.p(a), &self.p(b), sys::RENAME_NOREPLACE)
    }

    pub fn rename_exchange(&self, a: &str, b: &str) -> R<()> {
        sys::rename2(&self.p(a), &self.p(b), sys::RENAME_EXCHANGE)
    }

    pub fn link(&self, existing: &str, new: &str) -> R<()> {
        sys::link(&self.p(existing), &self.p(new))
    }

    pub fn symlink(&self, target: &str, p: &str) -> R<()> {
        sys::symlink(target, &self.p(p))
    }

    pub fn mkfifo(&self, p: &str, mode: u32) -> R<()> {
        sys::mknod(&self.p(p), libc::S_IFIFO | mode, 0, 0)
    }

    pub fn mknod_char(&self, p: &str, mode: u32, major: u32, minor: u32) -> R<()> {
        sys::mknod(&self.p(p), libc::S_IFCHR | mode, major, minor)
    }

    pub fn chmod(&self, p: &str, mode: u32) -> R<()> {
        sys::chmod(&self.p(p), mode)
    }

    pub fn lchmod(&self, p: &str, mode: u32) -> R<()> {
        sys::lchmod(&self.p(p), mode)
    }

    /// lchown.
    pub fn chown(&self, p: &str, uid: u32, gid: u32) -> R<()> {
        sys::lchown(&self.p(p), uid, gid)
    }

    /// Set atime and mtime (seconds, nanoseconds), not following symlinks.
    pub fn set_times(&self, p: &str, atime: (i64, i64), mtime: (i64, i64)) -> R<()> {
        sys::lutimens(&self.p(p), atime, mtime)
    }

    pub fn access(&self, p: &str, mode: i32) -> R<()> {
        sys::access(&self.p(p), mode)
    }

    /// fallocate on `p` opened read-write.
    pub fn fallocate(&self, p: &str, mode: i32, off: u64, len: u64) -> R<()> {
        let fd = sys::open(&self.p(p), libc::O_RDWR, 0)?;
        sys::fallocate(&fd, mode, off, len)
    }

    /// lseek(fd, off, whence) on `p` opened read-only (SEEK_DATA / SEEK_HOLE).
    pub fn seek(&self, p: &str, off: i64, whence: i32) -> R<i64> {
        let fd = sys::open(&self.p(p), libc::O_RDONLY, 0)?;
        sys::lseek(&fd, off, whence)
    }

    pub fn statfs(&self, p: &str) -> R<FsInfo> {
        let st = sys::statfs(&self.p(p))?;
        Ok(FsInfo {
            namemax: st.f_namelen as u64,
            bsize_positive: st.f_bsize > 0,
            blocks_positive: st.f_blocks > 0,
            free_le_blocks: st.f_bfree <= st.f_blocks && st.f_bavail <= st.f_blocks,
        })
    }

    /// Open `p` read-write, unlink it, then fstat the open file, write and read back
    /// through it: (nlink, size after writing, content read back).
    pub fn open_unlink_fstat(&self, p: &str) -> R<(u64, u64, Vec<u8>)> {
        let fd = sys::open(&self.p(p), libc::O_RDWR, 0)?;
        sys::unlink(&self.p(p))?;
        sys::pwrite_all(&fd, b"after-unlink", 0)?;
        let st = sys::fstat(&fd)?;
        let back = sys::pread(&fd, 64, 0)?;
        Ok((st.st_nlink, st.st_size as u64, back))
    }

    /// copy_file_range the whole of `src` into a new file `dst`; returns bytes copied.
    pub fn copy_range(&self, src: &str, dst: &str) -> R<usize> {
        let s = sys::open(&self.p(src), libc::O_RDONLY, 0)?;
        let d = sys::open(
            &self.p(dst),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o644,
        )?;
        let len = sys::fstat(&s)?.st_size as usize;
        let mut done = 0;
        while done < len {
            let n = sys::copy_file_range(&s, &d, len - done)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }

    /// Create a file `p` and fsync it.
    pub fn put_fsync(&self, p: &str, data: &[u8]) -> R<()> {
        let fd = sys::open(
            &self.p(p),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o644,
        )?;
        sys::pwrite_all(&fd, data, 0)?;
        sys::fsync(&fd)
    }

    /// Whether an exclusive flock on `p` conflicts with another open file's lock.
    pub fn flock_conflict(&self, p: &str) -> R<(bool, bool)> {
        let a = sys::open(&self.p(p), libc::O_RDONLY, 0)?;
        let b = sys::open(&self.p(p), libc::O_RDONLY, 0)?;
        sys::flock(&a, libc::LOCK_EX | libc::LOCK_NB)?;
        let second = sys::flock(&b, libc::LOCK_EX | libc::LOCK_NB);
        let conflicted = second == Err(Errno::EWOULDBLOCK);
        sys::flock(&a, libc::LOCK_UN)?;
        let after = sys::flock(&b, libc::LOCK_EX | libc::LOCK_NB).is_ok();
        Ok((conflicted, after))
    }

    /// Whether `p` exists on the mount's *backing* branches: used by tests that must
    /// look underneath (the upper dir, never compared between implementations).
    pub fn upper_path(&self, p: &str) -> Option<std::path::PathBuf> {
        self.upper
            .as_ref()
            .map(|u| if p.is_empty() { u.clone() } else { u.join(p) })
    }
}

/// A 256-byte file name (one more than NAME_MAX).
pub fn long_name() -> String {
    "n".repeat(256)
}

/// A 255-byte file name (NAME_MAX).
pub fn max_name() -> String {
    "m".repeat(255)
}

/// FNV-1a, to compare file contents by hash.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Whether `p` exists at all (no following).
pub fn path_exists(p: &Path) -> bool {
    sys::lstat(p).is_ok()
}
