//! Copying a directory tree exactly as it is on disk: every xattr (strata's and overlayfs's
//! records included), owners, modes, times, hard links, devices, and sparse files with only
//! their data extents copied (a reflink where the filesystem can). What a native commit
//! turns a container's upper into (docs/commit.md).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::stat::{utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{lseek, Whence};

use crate::err;
use crate::util::{Ctx, Result};

/// What a copy did.
#[derive(Debug, Default, Clone)]
pub struct Copied {
    /// Entries created (hard links included).
    pub entries: u64,
    /// Bytes of file data copied (data extents only; reflinked files count 0).
    pub data_bytes: u64,
    /// Files shared by reflink.
    pub reflinked: u64,
    /// fsync(2) calls made, one per regular file with content and per directory.
    pub fsyncs: u64,
}

/// Decides, per entry, whether to copy it (`rel` is the path below the source root).
pub type Filter<'a> = &'a dyn Fn(&Path, &Path, &std::fs::Metadata) -> bool;

/// Copy the tree at `src` to `dst` (which must not exist). With `sync`, every regular file
/// with content and every directory is fsync'ed once written, so after a power loss the copy
/// is never named (by the caller's rename and metadata) before its bytes are on disk.
pub fn copy_tree(src: &Path, dst: &Path, sync: bool, keep: Filter<'_>) -> Result<Copied> {
    let mut c = Copier {
        links: HashMap::new(),
        out: Copied::default(),
        sync,
    };
    let m = std::fs::symlink_metadata(src).ctx(|| format!("cannot stat {}", src.display()))?;
    c.dir(Path::new(""), src, dst, &m, keep)?;
    Ok(c.out)
}

struct Copier {
    links: HashMap<(u64, u64), PathBuf>,
    out: Copied,
    sync: bool,
}

fn copy_xattrs(src: &Path, dst: &Path) -> Result<()> {
    let names = strata_sys::llistxattr(src)
        .map_err(|e| err!("cannot list the xattrs of {}: {e}", src.display()))?;
    for n in names {
        let name = OsStr::from_bytes(&n);
        match strata_sys::lgetxattr(src, name) {
            Ok(Some(v)) => strata_sys::lsetxattr(dst, name, &v, 0).map_err(|e| {
                err!(
                    "cannot copy the xattr {} to {}: {e}",
                    name.to_string_lossy(),
                    dst.display()
                )
            })?,
            Ok(None) => {}
            Err(e) => return Err(err!("cannot read the xattrs of {}: {e}", src.display())),
        }
    }
    Ok(())
}

fn set_times(dst: &Path, m: &std::fs::Metadata) -> Result<()> {
    let at = TimeSpec::new(m.atime(), m.atime_nsec());
    let mt = TimeSpec::new(m.mtime(), m.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        dst,
        &at,
        &mt,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| err!("cannot set the times of {}: {e}", dst.display()))
}

fn chown(dst: &Path, m: &std::fs::Metadata) -> Result<()> {
    std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()))
        .ctx(|| format!("cannot set the owner of {}", dst.display()))
}

fn fsync_dir(p: &Path) -> Result<()> {
    File::open(p)
        .and_then(|f| f.sync_all())
        .ctx(|| format!("cannot sync {}", p.display()))
}

/// Copy bytes [from, to) of `s` into the same offsets of `d`: copy_file_range (in-kernel,
/// no trip through user space), read/write where it is refused (across filesystems).
fn copy_range(s: &File, d: &File, from: u64, to: u64) -> io::Result<u64> {
    let mut off = from;
    while off < to {
        let want = (to - off).min(1 << 30) as usize;
        let mut oi = off as i64;
        let mut oo = off as i64;
        match nix::fcntl::copy_file_range(s.as_fd(), Some(&mut oi), d.as_fd(), Some(&mut oo), want)
        {
            Ok(0) => break,
            Ok(n) => off += n as u64,
            Err(Errno::EXDEV | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                return slow_range(s, d, off, to).map(|n| off - from + n)
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(off - from)
}

fn slow_range(mut s: &File, mut d: &File, from: u64, to: u64) -> io::Result<u64> {
    s.seek(SeekFrom::Start(from))?;
    d.seek(SeekFrom::Start(from))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    while from + done < to {
        let want = ((to - from - done) as usize).min(buf.len());
        let n = s.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        d.write_all(&buf[..n])?;
        done += n as u64;
    }
    Ok(done)
}

/// Copy a file's data extents only (SEEK_DATA/SEEK_HOLE): holes stay holes, so a 1 GiB
/// delta holding one 4 KiB block costs one block.
fn sparse_copy(s: &File, d: &File, len: u64) -> io::Result<u64> {
    d.set_len(len)?;
    let mut copied = 0u64;
    let mut off = 0u64;
    // Bounded: each turn moves past at least one data extent.
    while off < len {
        let data = match lseek(s.as_fd(), off as i64, Whence::SeekData) {
            Ok(o) => o as u64,
            Err(Errno::ENXIO) => break,
            // No SEEK_DATA support: the whole rest is data.
            Err(Errno::EINVAL) => off,
            Err(e) => return Err(e.into()),
        };
        if data >= len {
            break;
        }
        let hole = match lseek(s.as_fd(), data as i64, Whence::SeekHole) {
            Ok(o) => (o as u64).min(len),
            Err(Errno::ENXIO | Errno::EINVAL) => len,
            Err(e) => return Err(e.into()),
        };
        if hole <= data {
            break;
        }
        copied += copy_range(s, d, data, hole)?;
        off = hole;
    }
    Ok(copied)
}

impl Copier {
    fn dir(
        &mut self,
        rel: &Path,
        src: &Path,
        dst: &Path,
        m: &std::fs::Metadata,
        keep: Filter<'_>,
    ) -> Result<()> {
        std::fs::DirBuilder::new()
            .create(dst)
            .ctx(|| format!("cannot create {}", dst.display()))?;
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o700))
            .ctx(|| format!("cannot create {}", dst.display()))?;
        self.out.entries += 1;
        let mut names: Vec<_> = std::fs::read_dir(src)
            .ctx(|| format!("cannot list {}", src.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .ctx(|| format!("cannot list {}", src.display()))?;
        names.sort();
        for name in names {
            let s = src.join(&name);
            let d = dst.join(&name);
            let r = rel.join(&name);
            let em =
                std::fs::symlink_metadata(&s).ctx(|| format!("cannot stat {}", s.display()))?;
            if !keep(&r, &s, &em) {
                continue;
            }
            self.entry(&r, &s, &d, &em, keep)?;
        }
        copy_xattrs(src, dst)?;
        chown(dst, m)?;
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .ctx(|| format!("cannot set the mode of {}", dst.display()))?;
        set_times(dst, m)?;
        if self.sync {
            // Its entries' names are on disk before anything names the copy.
            fsync_dir(dst)?;
            self.out.fsyncs += 1;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        rel: &Path,
        s: &Path,
        d: &Path,
        m: &std::fs::Metadata,
        keep: Filter<'_>,
    ) -> Result<()> {
        let ft = m.file_type();
        if ft.is_dir() {
            return self.dir(rel, s, d, m, keep);
        }
        if ft.is_socket() {
            return Ok(());
        }
        if m.nlink() > 1 {
            if let Some(first) = self.links.get(&(m.dev(), m.ino())) {
                std::fs::hard_link(first, d)
                    .ctx(|| format!("cannot link {} to {}", d.display(), first.display()))?;
                self.out.entries += 1;
                return Ok(());
            }
            self.links.insert((m.dev(), m.ino()), d.to_path_buf());
        }
        self.out.entries += 1;
        if ft.is_symlink() {
            let target = std::fs::read_link(s).ctx(|| format!("cannot read {}", s.display()))?;
            std::os::unix::fs::symlink(&target, d)
                .ctx(|| format!("cannot create {}", d.display()))?;
            // Symlinks cannot carry user.* xattrs: a rootless upper has none to copy.
            copy_xattrs(s, d)?;
            chown(d, m)?;
            return set_times(d, m);
        }
        if ft.is_file() {
            return self.file(s, d, m);
        }
        let kind = if ft.is_fifo() {
            SFlag::S_IFIFO
        } else if ft.is_char_device() {
            SFlag::S_IFCHR
        } else {
            SFlag::S_IFBLK
        };
        nix::sys::stat::mknod(
            d,
            kind,
            Mode::from_bits_truncate(m.mode() & 0o7777),
            m.rdev(),
        )
        .map_err(|e| err!("cannot create {}: {e}", d.display()))?;
        copy_xattrs(s, d)?;
        chown(d, m)?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .ctx(|| format!("cannot set the mode of {}", d.display()))?;
        set_times(d, m)
    }

    fn file(&mut self, s: &Path, d: &Path, m: &std::fs::Metadata) -> Result<()> {
        // The records first, then the bytes: a delta's blocks are written before the record
        // listing them, so bytes read after the record hold at least what it lists (a live
        // container may still be writing; commit syncs its mount first).
        let src = File::open(s).ctx(|| format!("cannot read {}", s.display()))?;
        let len = src
            .metadata()
            .ctx(|| format!("cannot stat {}", s.display()))?
            .len();
        let dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(d)
            .ctx(|| format!("cannot create {}", d.display()))?;
        copy_xattrs(s, d)?;
        let mut content = strata_sys::llistxattr(s).is_ok_and(|x| !x.is_empty());
        if len > 0 {
            if strata_sys::ficlone(dst.as_fd(), src.as_fd()).is_ok() {
                self.out.reflinked += 1;
                content = true;
            } else {
                let n = sparse_copy(&src, &dst, len)
                    .ctx(|| format!("cannot copy {} to {}", s.display(), d.display()))?;
                self.out.data_bytes += n;
                content |= n > 0;
            }
        }
        std::os::unix::fs::fchown(&dst, Some(m.uid()), Some(m.gid()))
            .ctx(|| format!("cannot set the owner of {}", d.display()))?;
        dst.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .ctx(|| format!("cannot set the mode of {}", d.display()))?;
        set_times(d, m)?;
        if self.sync && content {
            // Data and records on disk before the layer is published (empty files and
            // plain whiteouts need only their directory's entry, synced with it).
            dst.sync_all()
                .ctx(|| format!("cannot sync {}", d.display()))?;
            self.out.fsyncs += 1;
        }
        Ok(())
    }
}
