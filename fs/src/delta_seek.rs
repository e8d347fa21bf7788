//! SEEK_DATA / SEEK_HOLE on a delta file, over the merged view: blocks held in the upper
//! are data where the upper file has data, the rest below the lower limit is data where
//! the lower file has data, and everything else reads as zeros (a hole). This is the
//! extent map FUSE can carry (it has no FIEMAP request): `cp --sparse`, `tar -S` and
//! backup tools find a delta's holes as on the whole file overlayfs would have copied.

use crate::delta::DeltaMap;
use crate::delta_io::DeltaFile;
use crate::handles::OpenFile;
use crate::union::{errno, Union};
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

/// Where the bytes at one position come from, and up to where.
enum Part<'a> {
    /// A file (the upper or the lower): its own data and holes count, up to `end`.
    File(&'a File, u64),
    /// Zeros up to `end`.
    Zero(u64),
}

/// The part of the merged file that starts at `pos` (< `size`).
fn part_at<'a>(map: &DeltaMap, upper: &'a File, lower: &'a File, pos: u64, size: u64) -> Part<'a> {
    let b = pos / map.block;
    let i = map.ranges.partition_point(|r| r.1 <= b);
    match map.ranges.get(i) {
        Some(&(a, z)) if a <= b => Part::File(upper, z.saturating_mul(map.block).min(size)),
        next => {
            let next = next.map_or(size, |r| r.0.saturating_mul(map.block).min(size));
            if pos < map.limit {
                Part::File(lower, next.min(map.limit))
            } else {
                Part::Zero(next)
            }
        }
    }
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

/// SEEK_DATA (`data`) or SEEK_HOLE from `offset` in the merged view of delta `d`.
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
    let mut pos = start;
    // Each step moves past one part: at most three per upper range (lower, zeros, upper).
    let bound = map.ranges.len().saturating_mul(3).saturating_add(4);
    for _ in 0..bound {
        if pos >= size {
            break;
        }
        let (found, end) = match part_at(&map, &d.upper, lower, pos, size) {
            Part::Zero(end) if data => (None, end),
            Part::Zero(_) => (Some(pos), pos),
            Part::File(f, end) => (seek_in(f, pos, data)?.filter(|o| *o < end), end),
        };
        if let Some(o) = found {
            return Ok(o as i64);
        }
        pos = end.max(pos + 1);
    }
    if data {
        Err(errno(libc::ENXIO))
    } else {
        // The virtual hole at the end of the file.
        Ok(size as i64)
    }
}
