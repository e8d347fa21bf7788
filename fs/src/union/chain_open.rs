//! Opening a file's data chain through the union: following a record's `data +K PATH`
//! down the stack (the chain types and their reads are in chain.rs).

use crate::delta::format::{DeltaMap, Ident, MAX_BLOCK};
use crate::types::{errno, Layer};
use crate::union::attr::fmt;
use crate::union::attr::Attr;
use crate::union::chain::{Chain, Link, MAX_DEPTH};
use crate::union::fs::Union;
use crate::union::handles::OpenFile;
use crate::union::meta::Meta;
use nix::fcntl::OFlag;
use nix::sys::stat::FileStat;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

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
    /// metadata-only copy the blocks of the file holding its bytes. `st`: its stat.
    pub(crate) fn fix_lower_attr(
        &self,
        a: &mut Attr,
        layer: usize,
        bpath: &Path,
        st: &FileStat,
    ) -> io::Result<()> {
        let (Some(pp), Some(name)) = (bpath.parent(), bpath.file_name()) else {
            return Ok(());
        };
        let pd = self.dirfd(Layer::Lower(layer), pp)?;
        // A file known to carry no record (the common case) costs no xattr read.
        let Some(m) = self.lower_meta_st(pd.as_fd(), name, st)? else {
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
