//! SEEK_DATA / SEEK_HOLE on a delta file, over the merged view: blocks held in the upper
//! are data where the upper file has data, the rest below the lower limit is data where
//! the lower file has data, and everything else reads as zeros (a hole). This is the
//! extent map FUSE can carry (it has no FIEMAP request): `cp --sparse`, `tar -S` and
//! backup tools find a delta's holes as on the whole file overlayfs would have copied.

use crate::delta::file::DeltaFile;
use crate::types::errno;
use crate::union::fs::Union;
use crate::union::handles::OpenFile;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;

impl Union {
    /// SEEK_DATA (`data`) or SEEK_HOLE on open file `f` when the branch file cannot answer
    /// alone; None: it can.
    ///
    /// The kernel sends FUSE_LSEEK without writing back its dirty pages first, so bytes
    /// the daemon has not seen yet would be reported as a hole (`cp --sparse` then skips
    /// them). Under the writeback cache any file may hold such pages, and the kernel's
    /// size may be ahead of the branch file's: ENOSYS makes the kernel answer from its own
    /// size, the whole file as data (for every file of the mount from then on). Without it
    /// only a shared writable mmap leaves dirty pages, on a file open for writing: a delta
    /// then reports itself as all data too; whole files are passed through, where mmap
    /// reaches the branch file itself.
    pub(crate) fn seek_extents(
        &self,
        f: &OpenFile,
        offset: i64,
        data: bool,
    ) -> Option<io::Result<i64>> {
        if self.writeback_cache() {
            return Some(Err(errno(libc::ENOSYS)));
        }
        let d = f.live_delta()?;
        if self.handles.has_writer(f.ino) {
            return Some(all_data(d, offset, data));
        }
        Some(seek(d, offset, data))
    }
}

/// SEEK_DATA / SEEK_HOLE answered as if the whole file were data (a valid answer).
fn all_data(d: &DeltaFile, offset: i64, data: bool) -> io::Result<i64> {
    let size = d.upper.metadata()?.len() as i64;
    if offset < 0 || offset >= size {
        return Err(errno(libc::ENXIO));
    }
    Ok(if data { offset } else { size })
}

/// lseek(SEEK_DATA or SEEK_HOLE) in `f` from `pos`; None: nothing before EOF (ENXIO).
fn seek_in(f: &File, pos: u64, data: bool) -> io::Result<Option<u64>> {
    let w = if data {
        nix::unistd::Whence::SeekData
    } else {
        nix::unistd::Whence::SeekHole
    };
    let off = i64::try_from(pos).map_err(|_| errno(libc::EINVAL))?;
    match nix::unistd::lseek(f.as_fd(), off, w) {
        Ok(o) => Ok(Some(o.max(0) as u64)),
        Err(nix::errno::Errno::ENXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// SEEK_DATA (`data`) or SEEK_HOLE from `offset` in the merged view of delta `d`, through
/// every layer of its chain.
pub(crate) fn seek(d: &DeltaFile, offset: i64, data: bool) -> io::Result<i64> {
    let size = d.upper.metadata()?.len();
    let (map, lower) = d.map_and_lower();
    let start = u64::try_from(offset).map_err(|_| errno(libc::ENXIO))?;
    if start >= size {
        return Err(errno(libc::ENXIO));
    }
    let Some(map) = map else {
        // Whole by now: the upper file alone.
        return match seek_in(&d.upper, start, data)? {
            Some(o) => Ok(o as i64),
            None if data => Err(errno(libc::ENXIO)),
            None => Ok(size as i64),
        };
    };
    match lower.view(Some((&d.upper, &map))).seek(start, size, data)? {
        Some(o) => Ok(o as i64),
        None if data => Err(errno(libc::ENXIO)),
        // The virtual hole at the end of the file.
        None => Ok(size as i64),
    }
}
