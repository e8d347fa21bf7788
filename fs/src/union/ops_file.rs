//! Attribute, file-data and directory-reading operations.

use crate::types::{errno, Layer};
use crate::union::attr::Attr;
use crate::union::fs::Union;
use crate::union::handles::OpenFile;
use crate::union::inode::split;
use crate::union::inode::Placement;
use crate::union::owner_write::open_in_owned;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::UtimensatFlags;
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// A time to set: a given instant or "now".
#[derive(Debug, Clone, Copy)]
pub enum SetTime {
    /// The current time.
    Now,
    /// This instant.
    At(SystemTime),
}

/// The changes a setattr asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
    /// The open handle the change came through, if any.
    pub fh: Option<u64>,
}

fn to_timespec(t: Option<SetTime>) -> TimeSpec {
    match t {
        None => TimeSpec::UTIME_OMIT,
        Some(SetTime::Now) => TimeSpec::UTIME_NOW,
        Some(SetTime::At(t)) => match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => TimeSpec::new(d.as_secs() as i64, i64::from(d.subsec_nanos())),
            Err(e) => {
                let d = e.duration();
                TimeSpec::new(-(d.as_secs() as i64), 0)
            }
        },
    }
}

/// A setattr that changes nothing (what `chown(path, -1, -1)` sends) still updates
/// ctime on Linux: chown to (-1, -1) on the branch entry does exactly that.
fn touch_ctime(sa: &SetAttr) -> Option<(Option<Uid>, Option<Gid>)> {
    let nothing = sa.mode.is_none()
        && sa.uid.is_none()
        && sa.gid.is_none()
        && sa.size.is_none()
        && sa.atime.is_none()
        && sa.mtime.is_none();
    nothing.then_some((None, None))
}

impl Union {
    /// The branch entry that supplies a node's attributes: (branch, path).
    pub(crate) fn attr_source(
        &self,
        path: &Path,
        place: &Placement,
    ) -> io::Result<(Layer, PathBuf)> {
        if place.upper {
            return Ok((Layer::Upper, path.to_path_buf()));
        }
        if let Some((l, p)) = &place.lower {
            return Ok((Layer::Lower(*l), p.clone()));
        }
        if let Some(d) = &place.dir {
            if let Some((l, lp)) = d.layers.first() {
                return Ok((Layer::Lower(*l), lp.clone()));
            }
        }
        if path.as_os_str().is_empty() && !self.lowers.is_empty() {
            return Ok((Layer::Lower(0), PathBuf::new()));
        }
        Err(errno(libc::EIO))
    }

    /// Attributes of node `ino`.
    pub fn getattr(&self, ino: u64) -> io::Result<Attr> {
        let unlinked = self.nodes.read().get(ino).map(|n| n.unlinked);
        match unlinked {
            None => return Err(errno(libc::ESTALE)),
            Some(true) => return self.getattr_unlinked(ino),
            Some(false) => {}
        }
        let (path, place) = self.node_info(ino)?;
        let (layer, bpath) = self.attr_source(&path, &place)?;
        let st = self.stat_in(layer, &bpath)?;
        let mut a = self.attr_from(&st, ino);
        self.fix_merged_dir_nlink(&mut a, &place);
        if place.metacopy() && !place.delta {
            if let Some((l, p)) = &place.lower {
                if let Ok(b) = self.lower_data_blocks(*l, p) {
                    a.blocks = b;
                }
            }
        }
        if layer == Layer::Upper && a.kind() != libc::S_IFDIR && st.st_nlink > 1 {
            let (pp, name) = split(&path)?;
            let pd = self.dirfd(Layer::Upper, &pp)?;
            if let Some(n) = self
                .meta
                .read(&strata_sys::proc_path(pd.as_fd(), &name)?)?
                .and_then(|m| m.nlink)
            {
                a.nlink = n.min(u64::from(u32::MAX)) as u32;
            }
        }
        if let Layer::Lower(l) = layer {
            if a.kind() != libc::S_IFDIR {
                self.fix_lower_attr(&mut a, l, &bpath, &st)?;
            }
        }
        Ok(a)
    }

    /// Attributes of a node whose last name is gone: from an open handle, nlink 0.
    fn getattr_unlinked(&self, ino: u64) -> io::Result<Attr> {
        let Some(f) = self.handles.any_file_of(ino) else {
            return self.getattr_removed(ino);
        };
        let st = nix::sys::stat::fstat(f.file.as_fd())?;
        let mut a = self.attr_from(&st, ino);
        // An upper file may still have names the kernel has not looked up yet (hard links,
        // index copies); a lower file whose last merged name went is gone for good.
        a.nlink = match f.layer {
            Layer::Upper => match self.meta.read_fd(f.file.as_fd()).and_then(|m| m.nlink) {
                Some(n) => n.min(u64::from(u32::MAX)) as u32,
                None => a.nlink,
            },
            Layer::Lower(_) => 0,
        };
        Ok(a)
    }

    /// chmod/chown/truncate/utimes; metadata changes copy up metadata only.
    pub fn setattr(&self, ino: u64, sa: &SetAttr) -> io::Result<Attr> {
        let via_handle = sa.fh.and_then(|fh| self.handles.file(fh));
        let unlinked = self.nodes.read().get(ino).is_some_and(|n| n.unlinked);
        if unlinked {
            let f = via_handle
                .or_else(|| self.handles.any_file_of(ino))
                .ok_or_else(|| errno(libc::ENOENT))?;
            self.setattr_fd(&f, sa)?;
            return self.getattr(ino);
        }
        if !self.writable() {
            return Err(errno(libc::EROFS));
        }
        let mut size = sa.size;
        if let Some(new_size) = sa.size {
            let (path, place) = self.node_info(ino)?;
            if self.wants_delta(&path, &place) {
                let place = self.copy_up(ino, false)?;
                if place.metacopy() {
                    if let Some(d) = self.delta_file(ino, &path)? {
                        self.delta_truncate(&d, new_size)?;
                        self.note_delta_state(ino, &path, &place, &d);
                        size = None;
                    }
                }
            }
        }
        self.copy_up(ino, size.is_some())?;
        let (path, _) = self.node_info(ino)?;
        if path.as_os_str().is_empty() {
            let root = self.upper()?.root();
            let f = File::from(strata_sys::open_proc(
                &strata_sys::fd_path(root)?,
                libc::O_RDONLY | libc::O_DIRECTORY,
            )?);
            self.setattr_fd_file(&f, sa)?;
            return self.getattr(ino);
        }
        let (ppath, name) = split(&path)?;
        let pd = self.dirfd(Layer::Upper, &ppath)?;
        if let Some((uid, gid)) = self.owner_out(sa)?.or(touch_ctime(sa)) {
            nix::unistd::fchownat(
                pd.as_fd(),
                name.as_os_str(),
                uid,
                gid,
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        if let Some(mode) = sa.mode {
            self.chmod_at(pd.as_fd(), &name, mode & 0o7777)?;
        }
        if let Some(size) = size {
            match via_handle.filter(|h| h.writable && h.layer == Layer::Upper) {
                Some(h) => h.file.set_len(size)?,
                None => File::from(open_in_owned(pd.as_fd(), &name, OFlag::O_WRONLY, 0)?)
                    .set_len(size)?,
            }
        }
        if sa.atime.is_some() || sa.mtime.is_some() {
            nix::sys::stat::utimensat(
                pd.as_fd(),
                name.as_os_str(),
                &to_timespec(sa.atime),
                &to_timespec(sa.mtime),
                UtimensatFlags::NoFollowSymlink,
            )?;
        }
        self.getattr(ino)
    }

    /// The on-disk owner a chown asks for (None: no chown); unmapped ids become the overflow id.
    fn owner_out(&self, sa: &SetAttr) -> io::Result<Option<(Option<Uid>, Option<Gid>)>> {
        if sa.uid.is_none() && sa.gid.is_none() {
            return Ok(None);
        }
        let uid = sa.uid.map(|u| self.uid_out(u)).transpose()?;
        let gid = sa.gid.map(|g| self.gid_out(g)).transpose()?;
        Ok(Some((uid.map(Uid::from_raw), gid.map(Gid::from_raw))))
    }

    fn setattr_fd(&self, f: &OpenFile, sa: &SetAttr) -> io::Result<()> {
        self.setattr_fd_file(&f.file, sa)
    }

    fn setattr_fd_file(&self, f: &File, sa: &SetAttr) -> io::Result<()> {
        if let Some((uid, gid)) = self.owner_out(sa)?.or(touch_ctime(sa)) {
            nix::unistd::fchown(f.as_fd(), uid, gid)?;
        }
        if let Some(mode) = sa.mode {
            nix::sys::stat::fchmod(
                f.as_fd(),
                nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777),
            )?;
        }
        if let Some(size) = sa.size {
            f.set_len(size)?;
        }
        if sa.atime.is_some() || sa.mtime.is_some() {
            nix::sys::stat::futimens(f.as_fd(), &to_timespec(sa.atime), &to_timespec(sa.mtime))?;
        }
        Ok(())
    }

    /// Target of a symlink.
    pub fn readlink(&self, ino: u64) -> io::Result<Vec<u8>> {
        let (path, place) = self.node_info(ino)?;
        let (layer, bpath) = self.attr_source(&path, &place)?;
        let (pp, name) = split(&bpath)?;
        let d = self.dirfd(layer, &pp)?;
        let t = nix::fcntl::readlinkat(d.as_fd(), name.as_os_str())?;
        Ok(t.into_encoded_bytes())
    }

    /// Open a regular file; writers get a full upper copy first.
    pub fn open(&self, ino: u64, flags: i32) -> io::Result<u64> {
        let acc = flags & libc::O_ACCMODE;
        let write = acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        if self.nodes.read().get(ino).is_some_and(|n| n.unlinked) {
            return self.reopen_unlinked(ino, flags, write);
        }
        let (layer, file) = if write {
            if !self.writable() {
                return Err(errno(libc::EROFS));
            }
            if let Some(fh) = self.open_delta(ino, flags, true)? {
                return Ok(fh);
            }
            self.copy_up(ino, true)?;
            let (path, _) = self.node_info(ino)?;
            let fd = match self.open_upper_file(&path, self.file_open_flags(flags)) {
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    self.open_append_only(&path, flags, e)?
                }
                r => r?,
            };
            (Layer::Upper, File::from(fd))
        } else {
            if let Some(fh) = self.open_delta(ino, flags, false)? {
                return Ok(fh);
            }
            let (path, place) = self.node_info(ino)?;
            let (layer, bpath) = match &place.lower {
                Some((l, p)) => (Layer::Lower(*l), p.clone()),
                None => self.attr_source(&path, &place)?,
            };
            let fd =
                self.open_to_read(layer, &bpath, self.file_open_flags(flags & !libc::O_TRUNC))?;
            let file = File::from(fd);
            match layer {
                Layer::Lower(l) if place.kind == libc::S_IFREG => {
                    return self.open_lower_chain(ino, &path, l, &bpath, file);
                }
                _ => (layer, file),
            }
        };
        Ok(self
            .handles
            .add_file(OpenFile::new(file, ino, layer, write, None)))
    }

    /// Open a file whose last name is gone (through /proc/PID/fd/N, as ext4 and overlayfs
    /// allow) by reopening the branch file an existing handle holds.
    fn reopen_unlinked(&self, ino: u64, flags: i32, write: bool) -> io::Result<u64> {
        let f = self
            .handles
            .any_file_of(ino)
            .ok_or_else(|| errno(libc::ENOENT))?;
        if write && f.layer != Layer::Upper {
            // Its bytes are only in a read-only branch; writes would have nowhere to go.
            return Err(errno(libc::EROFS));
        }
        let path = strata_sys::fd_path(f.file.as_fd())?;
        let oflags = self.file_open_flags(flags).bits() & !libc::O_NOFOLLOW;
        let file = File::from(strata_sys::open_proc(&path, oflags)?);
        Ok(self
            .handles
            .add_file(OpenFile::new(file, ino, f.layer, write, f.delta.clone())))
    }

    /// Open node `ino` as a delta when it is one, or (for writers) when it should become
    /// one; None means "open it as a whole file".
    fn open_delta(&self, ino: u64, flags: i32, write: bool) -> io::Result<Option<u64>> {
        let (path, place) = self.node_info(ino)?;
        let use_delta = if write {
            self.wants_delta(&path, &place)
        } else {
            place.delta
        };
        if !use_delta {
            return Ok(None);
        }
        let place = if write {
            self.copy_up(ino, false)?
        } else {
            place
        };
        if !place.metacopy() {
            return Ok(None);
        }
        let Some(d) = self.delta_file(ino, &path)? else {
            return Ok(None);
        };
        if write && flags & libc::O_TRUNC != 0 {
            self.delta_truncate(&d, 0)?;
        }
        self.note_delta_state(ino, &path, &place, &d);
        let file = d.upper.try_clone()?;
        Ok(Some(self.handles.add_file(OpenFile::new(
            file,
            ino,
            Layer::Upper,
            write,
            Some(d),
        ))))
    }

    /// The open file behind a handle.
    pub fn file(&self, fh: u64) -> io::Result<Arc<OpenFile>> {
        self.handles.file(fh).ok_or_else(|| errno(libc::EBADF))
    }

    /// Where a read-only handle reads now: itself, or (after the node's data moved while
    /// it was open) a handle on the new place, opened on first use.
    fn current(&self, f: Arc<OpenFile>) -> io::Result<Arc<OpenFile>> {
        if !f.stale.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(f);
        }
        let mut moved = f.moved.lock();
        if let Some(m) = moved.as_ref() {
            return Ok(m.clone());
        }
        let fh = self.open(f.ino, libc::O_RDONLY)?;
        let m = self
            .handles
            .remove_file(fh)
            .ok_or_else(|| errno(libc::EBADF))?;
        *moved = Some(m.clone());
        Ok(m)
    }

    /// Read up to `size` bytes at `offset`.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let f = self.current(self.file(fh)?)?;
        if let Some(d) = f.live_delta() {
            return self.delta_read(d, offset, size);
        }
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            match f.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// Write `data` at `offset`.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> io::Result<usize> {
        let f = self.file(fh)?;
        if !f.writable {
            return Err(errno(libc::EBADF));
        }
        if let Some(d) = f.live_delta() {
            return self.delta_write(d, offset, data);
        }
        f.file.write_all_at(data, offset)?;
        Ok(data.len())
    }

    /// Drop a handle.
    pub fn release(&self, fh: u64) {
        self.handles.remove_file(fh);
    }

    /// fsync (skipped with fsync=0 / volatile).
    pub fn fsync(&self, fh: u64, datasync: bool) -> io::Result<()> {
        if self.opts.no_fsync {
            return Ok(());
        }
        let f = self.file(fh)?;
        if datasync {
            f.file.sync_data()
        } else {
            f.file.sync_all()
        }
    }

    /// lseek for SEEK_DATA / SEEK_HOLE (and the others).
    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> io::Result<i64> {
        let f = self.current(self.file(fh)?)?;
        if matches!(whence, libc::SEEK_DATA | libc::SEEK_HOLE) {
            if let Some(r) = self.seek_extents(&f, offset, whence == libc::SEEK_DATA) {
                return r;
            }
        }
        let w = match whence {
            libc::SEEK_SET => nix::unistd::Whence::SeekSet,
            libc::SEEK_CUR => nix::unistd::Whence::SeekCur,
            libc::SEEK_END => nix::unistd::Whence::SeekEnd,
            libc::SEEK_DATA => nix::unistd::Whence::SeekData,
            libc::SEEK_HOLE => nix::unistd::Whence::SeekHole,
            _ => return Err(errno(libc::EINVAL)),
        };
        Ok(nix::unistd::lseek(f.file.as_fd(), offset, w)?)
    }

    /// fallocate on an open file.
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> io::Result<()> {
        let f = self.file(fh)?;
        if !f.writable {
            return Err(errno(libc::EBADF));
        }
        let off = i64::try_from(offset).map_err(|_| errno(libc::EFBIG))?;
        let len = i64::try_from(length).map_err(|_| errno(libc::EFBIG))?;
        if let Some(d) = f.live_delta() {
            return self.delta_fallocate(d, offset, length, mode);
        }
        strata_sys::fallocate(f.file.as_fd(), mode, off, len)
    }

    /// fallocate on a delta: zeroing modes write zeros through the delta, allocation only
    /// changes the size (the blocks below stay readable).
    fn delta_fallocate(
        &self,
        d: &crate::delta::file::DeltaFile,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> io::Result<()> {
        let keep = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        let zero = mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0;
        let known =
            libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE;
        if mode & !known != 0 {
            return Err(errno(libc::EOPNOTSUPP));
        }
        let size = d.upper.metadata()?.len();
        let end = offset
            .checked_add(length)
            .ok_or_else(|| errno(libc::EFBIG))?;
        if zero {
            let stop = if keep { end.min(size) } else { end };
            let zeros = vec![0u8; 1 << 20];
            let mut pos = offset;
            while pos < stop {
                let n = (stop - pos).min(zeros.len() as u64) as usize;
                self.delta_write(d, pos, &zeros[..n])?;
                pos += n as u64;
            }
            return Ok(());
        }
        if !keep && end > size {
            self.delta_truncate(d, end)?;
        }
        Ok(())
    }

    /// copy_file_range between two open files.
    pub fn copy_file_range(
        &self,
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
    ) -> io::Result<usize> {
        let fi = self.file(fh_in)?;
        let fo = self.file(fh_out)?;
        if !fo.writable {
            return Err(errno(libc::EBADF));
        }
        if fi.live_delta().is_some() || fo.live_delta().is_some() {
            // Deltas merge two files: copy through the merged view.
            let mut done: u64 = 0;
            while done < len {
                let n = (len - done).min(1 << 20) as u32;
                let buf = self.read(fh_in, off_in + done, n)?;
                if buf.is_empty() {
                    break;
                }
                self.write(fh_out, off_out + done, &buf)?;
                done += buf.len() as u64;
            }
            return Ok(done as usize);
        }
        let mut oi = i64::try_from(off_in).map_err(|_| errno(libc::EFBIG))?;
        let mut oo = i64::try_from(off_out).map_err(|_| errno(libc::EFBIG))?;
        let n = nix::fcntl::copy_file_range(
            fi.file.as_fd(),
            Some(&mut oi),
            fo.file.as_fd(),
            Some(&mut oo),
            usize::try_from(len).unwrap_or(usize::MAX),
        )?;
        Ok(n)
    }

    /// Whether the kernel's writeback cache is on (decided at FUSE init).
    pub(crate) fn writeback_cache(&self) -> bool {
        self.writeback.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Record whether the writeback cache was negotiated.
    pub fn set_writeback_cache(&self, on: bool) {
        self.writeback
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }
}
