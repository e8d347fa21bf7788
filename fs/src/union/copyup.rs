//! Copy-up: bringing a lower entry into the upper branch.
//!
//! Every copy is built in the workdir and renamed into place, so a crash never leaves a
//! half-copied entry visible. Metadata changes copy metadata only (a sparse file of the
//! right size whose meta xattr points at the lower data); data is filled in later, in
//! place, and the pointer removed only after the data is on disk. Lower hard links are
//! copied once into `WORKDIR/index` and linked from there, so they stay one inode.

use crate::types::{errno, Layer};
use crate::union::attr::fmt;
use crate::union::branch::{open_in, stat_at};
use crate::union::fs::Union;
use crate::union::inode::{join, split, Placement};
use crate::union::meta::{is_internal_xattr, Meta};
use crate::union::owner_write::{open_in_owned, with_owner_write};
use crate::union::resolve::Resolved;
use nix::fcntl::{OFlag, RenameFlags};
use nix::sys::stat::{FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use strata_sys as sys;

/// Copy `len` bytes of `src` into `dst` at the same offsets: reflink, copy_file_range, or
/// plain reads and writes, whichever the filesystems allow.
pub(crate) fn copy_data(src: &File, dst: &File, len: u64) -> io::Result<()> {
    if sys::ficlone(dst.as_fd(), src.as_fd()).is_ok() {
        return Ok(());
    }
    let mut off: u64 = 0;
    let mut use_cfr = true;
    let mut buf = Vec::new();
    while off < len {
        let chunk = (len - off).min(1 << 30) as usize;
        if use_cfr {
            let mut off_in = off as i64;
            let mut off_out = off as i64;
            match nix::fcntl::copy_file_range(
                src.as_fd(),
                Some(&mut off_in),
                dst.as_fd(),
                Some(&mut off_out),
                chunk,
            ) {
                Ok(0) => break,
                Ok(n) => {
                    off += n as u64;
                    continue;
                }
                Err(
                    nix::errno::Errno::EXDEV
                    | nix::errno::Errno::EINVAL
                    | nix::errno::Errno::ENOSYS
                    | nix::errno::Errno::EOPNOTSUPP,
                ) => use_cfr = false,
                Err(e) => return Err(e.into()),
            }
        }
        if buf.is_empty() {
            buf = vec![0u8; 1 << 20];
        }
        let want = chunk.min(buf.len());
        let n = src.read_at(&mut buf[..want], off)?;
        if n == 0 {
            break;
        }
        dst.write_all_at(&buf[..n], off)?;
        off += n as u64;
    }
    Ok(())
}

fn timespec(sec: i64, nsec: i64) -> TimeSpec {
    TimeSpec::new(sec, nsec)
}

impl Union {
    /// Make sure directory `path` exists in the upper, copying up each missing level.
    pub(crate) fn ensure_upper_dir_path(&self, path: &Path) -> io::Result<()> {
        let upper = self.upper()?;
        if path.as_os_str().is_empty() || upper.open_dir(path).is_ok() {
            return Ok(());
        }
        let mut cur = PathBuf::new();
        let mut place = self.root_placement();
        for comp in path.iter() {
            let r = self.resolve_child(&cur, &place, comp)?;
            if !r.place.is_dir() {
                return Err(errno(libc::ENOTDIR));
            }
            let child = join(&cur, comp);
            place = if r.place.upper {
                r.place
            } else {
                let _g = self.copyup_lock(r.ino);
                let p = if upper.open_dir(&child).is_ok() {
                    Placement {
                        upper: true,
                        ..r.place.clone()
                    }
                } else {
                    self.copy_up_dir(&child, &r)?
                };
                self.set_place(r.ino, &child, p.clone());
                p
            };
            cur = child;
        }
        Ok(())
    }

    /// Bring node `ino` into the upper; with `data`, also its bytes. Returns the placement.
    pub(crate) fn copy_up(&self, ino: u64, data: bool) -> io::Result<Placement> {
        let (path, place) = self.node_info(ino)?;
        if place.upper && !(data && place.metacopy()) {
            return Ok(place);
        }
        if path.as_os_str().is_empty() {
            return Ok(place);
        }
        let r = self.resolve_path(&path)?;
        if r.ino != ino {
            if r.place.kind != place.kind {
                // The branch changed behind strata's back (say, a symlink planted in the
                // upper where a lower directory was). ESTALE would make the kernel walk
                // the caller's path again and follow what is there now: refuse instead.
                tracing::error!(ino, found = r.ino, path = %path.display(), was = place.kind, now = r.place.kind,
                    "an entry changed type in a branch behind strata's back; refusing to copy it up");
                return Err(errno(libc::EIO));
            }
            tracing::debug!(ino, found = r.ino, path = %path.display(), "copy-up target changed identity");
            return Err(errno(libc::ESTALE));
        }
        self.copy_up_at(&path, &r, data)
    }

    /// Bring the entry at merged `path` (resolved as `r`) into the upper.
    pub(crate) fn copy_up_at(
        &self,
        path: &Path,
        r: &Resolved,
        data: bool,
    ) -> io::Result<Placement> {
        if r.place.upper && !(data && r.place.metacopy()) {
            return Ok(r.place.clone());
        }
        self.upper()?;
        let (ppath, _) = split(path)?;
        self.ensure_upper_dir_path(&ppath)?;
        let _g = self.copyup_lock(r.ino);
        // Someone may have finished the same copy-up while we waited for the lock.
        let r = self.resolve_path(path)?;
        let new_place = if r.place.metacopy() {
            if data {
                self.fill_metacopy(path, &r)?
            } else {
                r.place.clone()
            }
        } else if r.place.upper {
            r.place.clone()
        } else if r.place.is_dir() {
            self.copy_up_dir(path, &r)?
        } else {
            match self.copy_up_nondir(path, &r, data) {
                // The record naming the lower file did not fit in the upper's xattr space
                // (a lower path thousands of bytes long): copy the data instead.
                Err(e)
                    if !data
                        && matches!(
                            e.raw_os_error(),
                            Some(libc::ENOSPC | libc::E2BIG | libc::ERANGE)
                        ) =>
                {
                    tracing::debug!(path = %path.display(), "metadata-only copy-up does not fit its record: copying data");
                    self.copy_up_nondir(path, &r, true)?
                }
                r => r?,
            }
        };
        self.set_place(r.ino, path, new_place.clone());
        if new_place.kind == libc::S_IFREG && new_place.lower.is_none() {
            // The bytes are in the upper now: readers still on the lower file follow.
            self.handles.mark_moved(r.ino);
        }
        Ok(new_place)
    }

    /// Stage a new directory in the workdir with the lower directory's metadata.
    fn copy_up_dir(&self, path: &Path, r: &Resolved) -> io::Result<Placement> {
        let (ppath, name) = split(path)?;
        let work = self.work()?;
        let tmp = self.tmp_name();
        nix::sys::stat::mkdirat(
            work.dir.as_fd(),
            tmp.as_os_str(),
            Mode::from_bits_truncate(0o700),
        )?;
        let staged = (|| {
            let src = self.stat_source(path, r)?;
            let meta = Meta {
                ino: Some(r.ino),
                ..Meta::default()
            };
            self.copy_meta_to(work.dir.as_fd(), &tmp, &src, Some(&meta))?;
            let pd = self.dirfd(Layer::Upper, &ppath)?;
            // Moving a directory to another parent needs write access to it (its "..")
            // and to that parent; an unprivileged daemon owning a 0555 copy lacks both.
            with_owner_write(
                || pd.as_fd().try_clone_to_owned(),
                || {
                    with_owner_write(
                        || open_in(work.dir.as_fd(), &tmp, OFlag::O_PATH, 0),
                        || match nix::fcntl::renameat2(
                            work.dir.as_fd(),
                            tmp.as_os_str(),
                            pd.as_fd(),
                            name.as_os_str(),
                            RenameFlags::RENAME_NOREPLACE,
                        ) {
                            Ok(()) => Ok(()),
                            // Someone made it first; it must really be a directory (never a
                            // symlink planted there, which later resolutions would refuse to
                            // walk anyway).
                            Err(nix::errno::Errno::EEXIST) => match stat_at(pd.as_fd(), &name) {
                                Ok(st) if crate::union::attr::is_dir(&st) => Ok(()),
                                Ok(_) => {
                                    tracing::error!(path = %path.display(), "a non-directory appeared in the upper where a directory is copied up");
                                    Err(errno(libc::EIO))
                                }
                                Err(e) => Err(e),
                            },
                            Err(e) => Err(io::Error::from(e)),
                        },
                    )
                },
            )
        })();
        let _ = nix::unistd::unlinkat(
            work.dir.as_fd(),
            tmp.as_os_str(),
            nix::unistd::UnlinkatFlags::RemoveDir,
        );
        staged?;
        Ok(Placement {
            upper: true,
            ..r.place.clone()
        })
    }

    /// The branch entry whose metadata a copy-up reproduces: (branch, path, stat).
    fn stat_source(&self, path: &Path, r: &Resolved) -> io::Result<(Layer, PathBuf, FileStat)> {
        if r.place.upper {
            let st = self.upper()?.stat(path)?;
            return Ok((Layer::Upper, path.to_path_buf(), st));
        }
        if let Some((layer, p)) = &r.place.lower {
            let st = self.branch(Layer::Lower(*layer))?.stat(p)?;
            return Ok((Layer::Lower(*layer), p.clone(), st));
        }
        if let Some(d) = &r.place.dir {
            if let Some((layer, lp)) = d.layers.first() {
                let st = self.branch(Layer::Lower(*layer))?.stat(lp)?;
                return Ok((Layer::Lower(*layer), lp.clone(), st));
            }
        }
        Err(errno(libc::EIO))
    }

    /// Give `dir/name` the owner, mode, xattrs, meta and times of `src`.
    fn copy_meta_to(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        src: &(Layer, PathBuf, FileStat),
        meta: Option<&Meta>,
    ) -> io::Result<()> {
        let (layer, spath, st) = src;
        let dst = sys::proc_path(dir, name)?;
        let (sp, sn) = match (spath.parent(), spath.file_name()) {
            (Some(p), Some(n)) => (p.to_path_buf(), n.to_os_string()),
            _ => (PathBuf::new(), OsString::new()),
        };
        if !sn.is_empty() {
            let sd = self.dirfd(*layer, &sp)?;
            let srcp = sys::proc_path(sd.as_fd(), &sn)?;
            for xname in sys::llistxattr(&srcp).unwrap_or_default() {
                if is_internal_xattr(&xname) {
                    continue;
                }
                let xn = OsStr::from_bytes(&xname);
                if let Ok(Some(v)) = sys::lgetxattr(&srcp, xn) {
                    if let Err(e) = sys::lsetxattr(&dst, xn, &v, 0) {
                        tracing::debug!(name = ?xn, "xattr not copied up: {e}");
                    }
                }
            }
        }
        nix::unistd::fchownat(
            dir,
            name,
            Some(nix::unistd::Uid::from_raw(st.st_uid)),
            Some(nix::unistd::Gid::from_raw(st.st_gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        if let Some(m) = meta {
            if let Err(e) = self.meta.write(&dst, m) {
                // Symlinks and devices cannot carry user.* xattrs: only st_ino stability
                // of such entries suffers, so carry on (an unmarked 0/0 device, though,
                // would read as a whiteout).
                if fmt(st) == libc::S_IFREG || fmt(st) == libc::S_IFDIR || m.device {
                    return Err(e);
                }
            }
        }
        // The final mode last: until now the copy is the daemon's own 0600 file, which an
        // unprivileged daemon may give xattrs; a 0444 mode would forbid it that.
        if fmt(st) != libc::S_IFLNK {
            self.chmod_at(dir, name, st.st_mode & 0o7777)?;
        }
        nix::sys::stat::utimensat(
            dir,
            name,
            &timespec(st.st_atime, st.st_atime_nsec),
            &timespec(st.st_mtime, st.st_mtime_nsec),
            UtimensatFlags::NoFollowSymlink,
        )?;
        Ok(())
    }

    /// chmod of `dir/name` without following a symlink there.
    pub(crate) fn chmod_at(&self, dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
        let fd = open_in(dir, name, OFlag::O_PATH, 0)?;
        let st = nix::sys::stat::fstat(&fd)?;
        if fmt(&st) == libc::S_IFLNK {
            return Err(errno(libc::EOPNOTSUPP));
        }
        let p = sys::fd_path(fd.as_fd())?;
        let p = std::path::Path::new(OsStr::from_bytes(p.as_bytes()));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
    }

    /// Copy up a non-directory: whole, metadata-only, or through the hard-link index.
    fn copy_up_nondir(&self, path: &Path, r: &Resolved, data: bool) -> io::Result<Placement> {
        let (ppath, name) = split(path)?;
        let work = self.work()?;
        let src = self.stat_source(path, r)?;
        let (layer, lpath, st) = &src;
        let Layer::Lower(layer_idx) = *layer else {
            return Err(errno(libc::EIO));
        };
        // Every non-directory kind can be hard-linked (as overlayfs indexes them all).
        let indexed = fmt(st) != libc::S_IFDIR && st.st_nlink > 1;
        let metacopy = !data && !indexed && fmt(st) == libc::S_IFREG;
        let tmp = self.tmp_name();
        let result = (|| -> io::Result<()> {
            let mut meta = Meta {
                ino: Some(r.ino),
                // Whiteouts never resolve: a 0/0 device copied up is a real one.
                device: fmt(st) == libc::S_IFCHR && st.st_rdev == 0,
                ..Meta::default()
            };
            if indexed {
                // A pushed-down upper's copy keeps the count in its record (its own
                // st_nlink also counts its index entry).
                meta.nlink = Some(r.meta.as_ref().and_then(|m| m.nlink).unwrap_or(st.st_nlink));
            }
            match fmt(st) {
                libc::S_IFREG => {
                    let dst = File::from(open_in(
                        work.dir.as_fd(),
                        &tmp,
                        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
                        0o600,
                    )?);
                    let size = st.st_size.max(0) as u64;
                    if metacopy {
                        dst.set_len(size)?;
                        // Relative to the upper: the top lower is one below. The entry
                        // named may be a pushed-down upper's copy: readers follow its record.
                        meta.data = Some((layer_idx + 1, lpath.clone()));
                    } else {
                        self.copy_chain(layer_idx, lpath, &dst, size)?;
                        if !self.opts.no_fsync {
                            dst.sync_all()?;
                        }
                    }
                }
                libc::S_IFLNK => {
                    let target = nix::fcntl::readlinkat(
                        self.dirfd(*layer, lpath.parent().unwrap_or(Path::new("")))?
                            .as_fd(),
                        lpath.file_name().unwrap_or_default(),
                    )?;
                    nix::unistd::symlinkat(target.as_os_str(), work.dir.as_fd(), tmp.as_os_str())?;
                }
                kind => {
                    nix::sys::stat::mknodat(
                        work.dir.as_fd(),
                        tmp.as_os_str(),
                        SFlag::from_bits_truncate(kind),
                        Mode::from_bits_truncate(0o600),
                        st.st_rdev,
                    )?;
                }
            }
            self.copy_meta_to(work.dir.as_fd(), &tmp, &src, Some(&meta))?;
            let pd = self.dirfd(Layer::Upper, &ppath)?;
            if indexed {
                let iname = crate::union::index::index_name(r.ino);
                let index = self.upper_index_dir()?;
                match nix::unistd::linkat(
                    work.dir.as_fd(),
                    tmp.as_os_str(),
                    index.as_fd(),
                    iname.as_os_str(),
                    nix::fcntl::AtFlags::empty(),
                ) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                // The parent may be a copied-up 0555 directory the daemon owns: the
                // caller's chmod or touch of a file in it needs no write access there.
                with_owner_write(
                    || pd.as_fd().try_clone_to_owned(),
                    || {
                        nix::unistd::linkat(
                            index.as_fd(),
                            iname.as_os_str(),
                            pd.as_fd(),
                            name.as_os_str(),
                            nix::fcntl::AtFlags::empty(),
                        )
                        .map_err(io::Error::from)
                    },
                )
            } else {
                with_owner_write(
                    || pd.as_fd().try_clone_to_owned(),
                    || {
                        nix::fcntl::renameat2(
                            work.dir.as_fd(),
                            tmp.as_os_str(),
                            pd.as_fd(),
                            name.as_os_str(),
                            RenameFlags::RENAME_NOREPLACE,
                        )
                        .map_err(io::Error::from)
                    },
                )
            }
        })();
        let _ = nix::unistd::unlinkat(
            work.dir.as_fd(),
            tmp.as_os_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        result?;
        Ok(Placement {
            kind: r.place.kind,
            upper: true,
            lower: if metacopy {
                r.place.lower.clone()
            } else {
                None
            },
            dir: None,
            redirected: false,
            delta: false,
        })
    }

    /// Fill a metadata-only copy with its data, in place (hard links to it stay linked).
    fn fill_metacopy(&self, path: &Path, r: &Resolved) -> io::Result<Placement> {
        let Some((layer, lpath)) = &r.place.lower else {
            return Ok(r.place.clone());
        };
        if r.meta.as_ref().is_some_and(|m| m.delta.is_some()) {
            // Written blocks live in the upper: only the rest comes from below.
            if let Some(d) = self.delta_file(r.ino, path)? {
                self.delta_make_whole_now(&d)?;
            }
            return Ok(Placement {
                lower: None,
                delta: false,
                ..r.place.clone()
            });
        }
        let (ppath, name) = split(path)?;
        let pd = self.dirfd(Layer::Upper, &ppath)?;
        let dst = File::from(open_in_owned(pd.as_fd(), &name, OFlag::O_RDWR, 0)?);
        let src_len = self
            .branch(Layer::Lower(*layer))?
            .stat(lpath)?
            .st_size
            .max(0) as u64;
        let len = dst.metadata()?.len().min(src_len);
        self.copy_chain(*layer, lpath, &dst, len)?;
        if !self.opts.no_fsync {
            dst.sync_all()?;
        }
        let mut meta = r.meta.clone().unwrap_or_default();
        meta.data = None;
        self.meta
            .write(&sys::proc_path(pd.as_fd(), &name)?, &meta)?;
        Ok(Placement {
            lower: None,
            ..r.place.clone()
        })
    }

    /// Open a staged or upper directory entry as a File for writing metadata.
    pub(crate) fn open_upper_file(&self, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
        let (ppath, name) = split(path)?;
        let pd = self.dirfd(Layer::Upper, &ppath)?;
        open_in_owned(pd.as_fd(), &name, flags, 0)
    }
}
