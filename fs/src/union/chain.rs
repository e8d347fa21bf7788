//! Data chains: where the bytes of a file are when its record says some of them are in
//! the layers below (a metadata-only copy or a delta), at any depth of a stack.
//!
//! A record's `data +K PATH` names the entry PATH in the layer K below the layer holding
//! the record (docs/format.md); that entry may carry a record of its own, and so on down
//! to a plain file. A chain lists the layers on the way, top first: each holds the blocks
//! its delta map lists (none, for a metadata-only copy) and reads the rest from the next
//! one, below the map's limit; the last is a plain file. Positions only grow on the way
//! down (K >= 1), so a chain cannot loop; it is still bounded by [`MAX_DEPTH`].

use crate::union::attr::fmt;
use crate::union::attr::Attr;
use crate::delta::format::{read_full, DeltaMap, Ident, Source, MAX_BLOCK};
use crate::union::handles::OpenFile;
use crate::union::meta::Meta;
use crate::union::fs::{errno, Layer, Union};
use nix::fcntl::OFlag;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

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

impl Union {
    /// The lower branch a record held in `holder` names with `data +below`; EIO (logged)
    /// when that is past the bottom of the stack.
    pub(crate) fn data_layer(&self, holder: Layer, below: usize, path: &Path) -> io::Result<usize> {
        let layer = match holder {
            Layer::Upper => below.checked_sub(1),
            Layer::Lower(i) => i.checked_add(below),
        };
        match layer.filter(|l| *l < self.lowers.len()) {
            Some(l) => Ok(l),
            None => {
                tracing::error!(path = %path.display(), ?holder, below, layers = self.lowers.len(),
                    "a strata record names a layer below the bottom of the stack; run `strata fsck`");
                Err(errno(libc::EIO))
            }
        }
    }

    /// The chain of the entry at `path` in lower `layer`, open as `first`.
    pub(crate) fn chain_from(&self, layer: usize, path: &Path, first: File) -> io::Result<Chain> {
        let mut links = Vec::new();
        let mut cur = (layer, path.to_path_buf(), first);
        let mut expect: Option<Ident> = None;
        for _ in 0..MAX_DEPTH {
            let (layer, path, file) = cur;
            let st = nix::sys::stat::fstat(file.as_fd())?;
            if let Some(was) = expect {
                let now = Ident::of(&st);
                if was != now {
                    tracing::error!(path = %path.display(), layer,
                        "a lower file changed underneath the delta stacked on it (was size {} mtime {}.{} ino {}, now size {} mtime {}.{} ino {}); refusing to serve mixed data",
                        was.size, was.mtime, was.mtime_nsec, was.ino, now.size, now.mtime, now.mtime_nsec, now.ino);
                    return Err(errno(libc::EIO));
                }
            }
            let meta = if fmt(&st) == libc::S_IFREG {
                self.meta.try_read_lower_fd(file.as_fd()).map_err(|e| {
                    tracing::error!(path = %path.display(), layer, "corrupt strata record in a lower branch: {e}");
                    errno(libc::EIO)
                })?
            } else {
                None
            };
            let Some((below, next)) = meta.as_ref().and_then(|m| m.data.clone()) else {
                return Ok(Chain { links, base: file });
            };
            let meta = meta.unwrap_or_default();
            let map = meta.delta.unwrap_or(DeltaMap {
                block: MAX_BLOCK,
                limit: st.st_size.max(0) as u64,
                ranges: Vec::new(),
            });
            links.push(Link { file, map });
            expect = meta.ident;
            let nl = self.data_layer(Layer::Lower(layer), below, &path)?;
            let f = self
                .open_to_read(Layer::Lower(nl), &next, OFlag::O_RDONLY)
                .map_err(|e| {
                    tracing::error!(path = %path.display(), layer, origin = %next.display(), origin_layer = nl,
                        "the file a lower strata record names is gone: {e}");
                    errno(libc::EIO)
                })?;
            cur = (nl, next, File::from(f));
        }
        tracing::error!(path = %path.display(), layer, "data chain deeper than {MAX_DEPTH} layers");
        Err(errno(libc::EIO))
    }

    /// A read handle on the regular file at `bpath` in lower `layer` (open as `file`) for
    /// node `ino` at `path`: a plain one, or, when the entry carries a record (a pushed-down
    /// upper's metadata-only copy or delta), one that reads through its chain.
    pub(crate) fn open_lower_chain(
        &self,
        ino: u64,
        path: &Path,
        layer: usize,
        bpath: &Path,
        file: File,
    ) -> io::Result<u64> {
        let chain = self.chain_from(layer, bpath, file)?;
        let l = Layer::Lower(layer);
        Ok(match self.lower_chain_file(ino, path, chain) {
            Ok(d) => {
                let top = d.upper.try_clone()?;
                self.handles
                    .add_file(OpenFile::new(top, ino, l, false, Some(d)))
            }
            Err(plain) => self
                .handles
                .add_file(OpenFile::new(plain, ino, l, false, None)),
        })
    }

    /// Attributes of the regular file at `bpath` in lower `layer` as its record says (a
    /// pushed-down upper's entry): the link count of a copied-up lower hard link, and for a
    /// metadata-only copy the blocks of the file holding its bytes.
    pub(crate) fn fix_lower_attr(
        &self,
        a: &mut Attr,
        layer: usize,
        bpath: &Path,
    ) -> io::Result<()> {
        let (Some(pp), Some(name)) = (bpath.parent(), bpath.file_name()) else {
            return Ok(());
        };
        let pd = self.dirfd(Layer::Lower(layer), pp)?;
        let Some(m) = self.lower_meta(pd.as_fd(), name)? else {
            return Ok(());
        };
        if let Some(n) = m.nlink {
            a.nlink = n.min(u64::from(u32::MAX)) as u32;
        }
        if let (Some((below, target)), None) = (&m.data, &m.delta) {
            let data = self.data_layer(Layer::Lower(layer), *below, bpath);
            if let Ok(b) = data.and_then(|l| self.lower_data_blocks(l, target)) {
                a.blocks = b;
            }
        }
        Ok(())
    }

    /// st_blocks of the file that holds the bytes of the entry at `path` in lower `layer`:
    /// the entry itself, or for a metadata-only copy the file its records lead to (as
    /// overlayfs reports a metacopy's blocks).
    pub(crate) fn lower_data_blocks(&self, layer: usize, path: &Path) -> io::Result<u64> {
        let (mut layer, mut path) = (layer, path.to_path_buf());
        for _ in 0..MAX_DEPTH {
            let st = self.branch(Layer::Lower(layer))?.stat(&path)?;
            let meta = match (path.parent(), path.file_name(), fmt(&st)) {
                (Some(pp), Some(name), libc::S_IFREG) => {
                    let d = self.dirfd(Layer::Lower(layer), pp)?;
                    self.lower_meta(d.as_fd(), name)?
                }
                _ => None,
            };
            match meta {
                Some(Meta {
                    data: Some((below, next)),
                    delta: None,
                    ..
                }) => {
                    layer = self.data_layer(Layer::Lower(layer), below, &path)?;
                    path = next;
                }
                _ => return Ok(st.st_blocks.max(0) as u64),
            }
        }
        Err(errno(libc::EIO))
    }

    /// The chain of the entry at `path` in lower `layer`.
    pub(crate) fn lower_chain(&self, layer: usize, path: &Path) -> io::Result<Chain> {
        let f = File::from(self.open_to_read(Layer::Lower(layer), path, OFlag::O_RDONLY)?);
        self.chain_from(layer, path, f)
    }

    /// How many files the bytes of the merged file at `path` come from (1: a plain
    /// file; a delta in the upper over a plain lower file: 2), for flattening long chains.
    pub fn chain_depth(&self, path: &Path) -> io::Result<usize> {
        let r = self.resolve_path(path)?;
        let Some((layer, lpath)) = &r.place.lower else {
            return Ok(1);
        };
        let below = self.lower_chain(*layer, lpath)?.depth();
        Ok(below + usize::from(r.place.upper))
    }

    /// Copy the merged bytes of the entry at `lpath` in lower `layer` into `dst`
    /// (`len` bytes), keeping holes where the chain reads zeros.
    pub(crate) fn copy_chain(
        &self,
        layer: usize,
        lpath: &Path,
        dst: &File,
        len: u64,
    ) -> io::Result<()> {
        let chain = self.lower_chain(layer, lpath)?;
        if chain.links.is_empty() {
            return crate::union::copyup::copy_data(&chain.base, dst, len);
        }
        if dst.metadata()?.len() < len {
            dst.set_len(len)?;
        }
        let mut buf = Vec::new();
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(1 << 20);
            buf.resize(n as usize, 0);
            chain.read(&mut buf, pos)?;
            if buf.iter().any(|b| *b != 0) {
                std::os::unix::fs::FileExt::write_all_at(dst, &buf, pos)?;
            }
            pos += n;
        }
        Ok(())
    }
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
