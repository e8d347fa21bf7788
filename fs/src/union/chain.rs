//! Data chains: where the bytes of a file are when its record says some of them are in
//! the layers below (a metadata-only copy or a delta), at any depth of a stack.
//!
//! A record's `data +K PATH` names the entry PATH in the layer K below the layer holding
//! the record (docs/format.md); that entry may carry a record of its own, and so on down
//! to a plain file. A chain lists the layers on the way, top first: each holds the blocks
//! its delta map lists (none, for a metadata-only copy) and reads the rest from the next
//! one, below the map's limit; the last is a plain file. Positions only grow on the way
//! down (K >= 1), so a chain cannot loop; it is still bounded by [`MAX_DEPTH`].

use crate::delta::format::{read_full, DeltaMap, Source};
use crate::types::errno;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;

/// Most layers a chain may cross (a record naming a deeper one is refused with EIO).
pub const MAX_DEPTH: usize = 128;

/// One layer of a chain that holds some of the file's blocks.
#[derive(Debug)]
pub(crate) struct Link {
    /// The layer's file.
    pub file: File,
    /// Which blocks it holds; the rest, below `limit`, comes from the next layer.
    pub map: DeltaMap,
}

/// The layers a file's bytes come from, top first, ending in a plain file.
#[derive(Debug)]
pub struct Chain {
    pub(crate) links: Vec<Link>,
    pub(crate) base: File,
}

/// A chain seen as levels of (file, map) over a base file, possibly with a level on top
/// (an open delta in the upper, whose map changes under its lock).
pub(crate) struct View<'a> {
    levels: Vec<(&'a File, &'a DeltaMap)>,
    base: &'a File,
}

impl Chain {
    /// A chain of one plain file.
    pub fn plain(base: File) -> Chain {
        Chain {
            links: Vec::new(),
            base,
        }
    }

    /// Number of files the bytes may come from (1: a plain file).
    pub fn depth(&self) -> usize {
        self.links.len() + 1
    }

    /// The file at the top of the chain (the entry the chain was built from).
    pub fn top(&self) -> &File {
        self.links.first().map_or(&self.base, |l| &l.file)
    }

    /// The chain as levels, under an optional extra level on top.
    pub(crate) fn view<'a>(&'a self, top: Option<(&'a File, &'a DeltaMap)>) -> View<'a> {
        let mut levels: Vec<(&File, &DeltaMap)> = top.into_iter().collect();
        levels.extend(self.links.iter().map(|l| (&l.file, &l.map)));
        View {
            levels,
            base: &self.base,
        }
    }

    /// Read `buf.len()` bytes at `off` of the merged file (zeros past its end).
    pub fn read(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.view(None).read(buf, off)
    }
}

impl View<'_> {
    /// Read `buf.len()` bytes at `off`, each range from the topmost level that holds it.
    pub(crate) fn read(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        read_levels(&self.levels, self.base, buf, off)
    }

    /// The first offset in `pos..end` that is data (`data`) or a hole; None: there is none.
    pub(crate) fn seek(&self, pos: u64, end: u64, data: bool) -> io::Result<Option<u64>> {
        seek_levels(&self.levels, self.base, pos, end, data)
    }
}

fn read_levels(
    levels: &[(&File, &DeltaMap)],
    base: &File,
    buf: &mut [u8],
    off: u64,
) -> io::Result<()> {
    let Some(((file, map), rest)) = levels.split_first() else {
        return read_full(base, buf, off);
    };
    for (src, o, n) in map.runs(off, buf.len() as u64) {
        let at = (o - off) as usize;
        let part = &mut buf[at..at + n as usize];
        match src {
            Source::Upper => read_full(file, part, o)?,
            Source::Lower => read_levels(rest, base, part, o)?,
            Source::Zero => part.fill(0),
        }
    }
    Ok(())
}

/// Where the bytes at one position of a level come from, and up to where.
enum Part {
    /// The level's own file.
    Own(u64),
    /// The levels below.
    Below(u64),
    /// Zeros.
    Zero(u64),
}

fn part_at(map: &DeltaMap, pos: u64, end: u64) -> Part {
    let b = pos / map.block;
    let i = map.ranges.partition_point(|r| r.1 <= b);
    match map.ranges.get(i) {
        Some(&(a, z)) if a <= b => Part::Own(z.saturating_mul(map.block).min(end)),
        next => {
            let next = next.map_or(end, |r| r.0.saturating_mul(map.block).min(end));
            if pos < map.limit {
                Part::Below(next.min(map.limit))
            } else {
                Part::Zero(next)
            }
        }
    }
}

/// lseek(SEEK_DATA or SEEK_HOLE) in `f` from `pos`, limited to `pos..end`; past the
/// file's end everything is a hole.
fn seek_file(f: &File, pos: u64, end: u64, data: bool) -> io::Result<Option<u64>> {
    let w = if data {
        nix::unistd::Whence::SeekData
    } else {
        nix::unistd::Whence::SeekHole
    };
    let off = i64::try_from(pos).map_err(|_| errno(libc::EINVAL))?;
    match nix::unistd::lseek(f.as_fd(), off, w) {
        Ok(o) => Ok(Some(o.max(0) as u64).filter(|o| *o < end)),
        Err(nix::errno::Errno::ENXIO) => Ok((!data).then_some(pos)),
        Err(e) => Err(e.into()),
    }
}

fn seek_levels(
    levels: &[(&File, &DeltaMap)],
    base: &File,
    pos: u64,
    end: u64,
    data: bool,
) -> io::Result<Option<u64>> {
    let Some(((file, map), rest)) = levels.split_first() else {
        return seek_file(base, pos, end, data);
    };
    let mut pos = pos;
    // Each step moves past one part: at most three per range (below, zeros, own).
    let bound = map.ranges.len().saturating_mul(3).saturating_add(4);
    for _ in 0..bound {
        if pos >= end {
            break;
        }
        let (found, stop) = match part_at(map, pos, end) {
            Part::Own(stop) => (seek_file(file, pos, stop, data)?, stop),
            Part::Below(stop) => (seek_levels(rest, base, pos, stop, data)?, stop),
            Part::Zero(stop) => ((!data).then_some(pos), stop),
        };
        if found.is_some() {
            return Ok(found);
        }
        pos = stop.max(pos + 1);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn file(name: &str, bytes: &[(u64, &[u8])], len: u64) -> File {
        let p = std::env::temp_dir().join(format!("strata-chain-{}-{name}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        let _ = std::fs::remove_file(&p);
        f.set_len(len).unwrap();
        for (o, b) in bytes {
            f.write_all_at(b, *o).unwrap();
        }
        f
    }

    /// A delta over a delta over a plain file: each byte from the topmost layer holding it.
    #[test]
    fn reads_and_seeks_merge_levels() {
        let base = file("base", &[(0, &[b'a'; 64])], 64);
        let mid = file("mid", &[(16, &[b'b'; 16])], 64);
        let top = file("top", &[(32, &[b'c'; 8])], 64);
        let mut mid_map = DeltaMap::new(16, 48);
        mid_map.insert(1, 2);
        let mut top_map = DeltaMap::new(8, 64);
        top_map.insert(4, 5);
        let chain = Chain {
            links: vec![Link {
                file: mid,
                map: mid_map,
            }],
            base,
        };
        let v = chain.view(Some((&top, &top_map)));
        let mut buf = vec![0u8; 64];
        v.read(&mut buf, 0).unwrap();
        let mut want = vec![b'a'; 64];
        want[16..32].fill(b'b');
        want[32..40].fill(b'c');
        want[40..48].fill(b'a');
        want[48..].fill(0);
        assert_eq!(buf, want);
        assert_eq!(v.seek(0, 64, true).unwrap(), Some(0));
        assert_eq!(v.seek(0, 64, false).unwrap(), Some(48));
        assert_eq!(v.seek(50, 64, true).unwrap(), None);
        assert_eq!(chain.depth(), 2);
    }
}
