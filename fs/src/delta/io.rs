//! Reading and writing delta files through the union (the format is in format.rs, the
//! shared state of an open one in file.rs).
//!
//! All open handles of one inode share one [`DeltaFile`], so they see one block map. Writes
//! to a delta hold its lock for the write (blocks must be filled and claimed in order);
//! reads take a snapshot of the map and do their I/O without it. Compaction into a whole
//! file runs in the background (compact.rs).

use crate::delta::file::{DeltaFile, DeltaState};
use crate::delta::format::{read_full, DeltaMap, Ident, Source, DEFAULT_BLOCK, MAX_ENCODED};
use crate::types::{errno, Layer};
use crate::union::chain::Chain;
use crate::union::fs::Union;
use crate::union::inode::Placement;
use crate::union::meta::Meta;
use nix::fcntl::OFlag;
use parking_lot::Mutex;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

impl Union {
    /// The shared delta state of node `ino` at `path`, opening it if needed; turns a
    /// metadata-only copy into a delta on first use. None: the file is whole by now.
    pub(crate) fn delta_file(&self, ino: u64, path: &Path) -> io::Result<Option<Arc<DeltaFile>>> {
        if let Some(d) = self
            .deltas
            .lock()
            .get(&ino)
            .and_then(std::sync::Weak::upgrade)
        {
            return Ok(Some(d));
        }
        let upper = File::from(self.open_upper_file(path, OFlag::O_RDWR)?);
        let meta = self
            .meta
            .try_read_fd(upper.as_fd())
            .map_err(|e| {
                tracing::error!(path = %path.display(), "corrupt delta record: {e}; run `strata fsck` on the upper directory");
                errno(libc::EIO)
            })?
            .unwrap_or_default();
        let Some((below, lpath)) = meta.data.clone() else {
            self.mark_whole(ino, path);
            return Ok(None);
        };
        let layer = self.data_layer(Layer::Upper, below, path)?;
        let first = File::from(
            self.open_to_read(Layer::Lower(layer), &lpath, OFlag::O_RDONLY)
                .map_err(|e| {
                    tracing::error!(path = %path.display(), lower = %lpath.display(), "the lower file of a delta is gone: {e}");
                    errno(libc::EIO)
                })?,
        );
        let lower = self.chain_from(layer, &lpath, first)?;
        let now = Ident::of(&nix::sys::stat::fstat(lower.top().as_fd())?);
        let mut meta = meta;
        match meta.ident {
            Some(was) if was != now => {
                tracing::error!(
                    path = %path.display(),
                    lower = %lpath.display(),
                    layer,
                    "the lower file changed underneath its delta (was size {} mtime {}.{} ino {}, now size {} mtime {}.{} ino {}); refusing to serve mixed data",
                    was.size, was.mtime, was.mtime_nsec, was.ino, now.size, now.mtime, now.mtime_nsec, now.ino
                );
                return Err(errno(libc::EIO));
            }
            Some(_) => {}
            None => meta.ident = Some(now),
        }
        if meta.delta.is_none() {
            let size = upper.metadata()?.len();
            meta.delta = Some(DeltaMap::new(self.delta_block(), size.min(now.size)));
            // Recorded now, not at the first write: a lookup resolving the file meanwhile
            // would see a metadata-only copy and set the node back to reading the lower
            // file, and a read after the write returned the lower bytes.
            self.meta.write_fd(upper.as_fd(), &meta)?;
        }
        let d = Arc::new_cyclic(|me| DeltaFile {
            upper,
            lower,
            ino,
            path: path.to_path_buf(),
            state: Mutex::new(DeltaState {
                meta,
                written: None,
            }),
            me: me.clone(),
            compacting: AtomicBool::new(false),
        });
        let mut map = self.deltas.lock();
        map.retain(|_, w| w.strong_count() > 0);
        // Another thread may have opened it meanwhile: use theirs.
        if let Some(existing) = map.get(&ino).and_then(std::sync::Weak::upgrade) {
            return Ok(Some(existing));
        }
        map.insert(ino, Arc::downgrade(&d));
        drop(map);
        self.flatten_if_deep(&d);
        Ok(Some(d))
    }

    /// A read-only delta over the chain of a lower entry that carries a strata record (a
    /// pushed-down upper's metadata-only copy or delta): reads merge its layers. None: the
    /// entry is a plain file (`chain.base`).
    pub(crate) fn lower_chain_file(
        &self,
        ino: u64,
        path: &Path,
        chain: Chain,
    ) -> Result<Arc<DeltaFile>, File> {
        let mut links = chain.links.into_iter();
        let Some(top) = links.next() else {
            return Err(chain.base);
        };
        let lower = Chain {
            links: links.collect(),
            base: chain.base,
        };
        Ok(Arc::new_cyclic(|me| DeltaFile {
            upper: top.file,
            lower,
            ino,
            path: path.to_path_buf(),
            state: Mutex::new(DeltaState {
                meta: Meta {
                    delta: Some(top.map),
                    ..Meta::default()
                },
                written: None,
            }),
            me: me.clone(),
            // Never compacted: a lower branch is not written.
            compacting: AtomicBool::new(true),
        }))
    }

    fn delta_block(&self) -> u64 {
        if self.opts.delta_block > 0 {
            self.opts.delta_block
        } else {
            DEFAULT_BLOCK
        }
    }

    /// Read from a delta, merging upper blocks over the lower file.
    pub(crate) fn delta_read(&self, d: &DeltaFile, off: u64, size: u32) -> io::Result<Vec<u8>> {
        let file_size = d.upper.metadata()?.len();
        if off >= file_size {
            return Ok(Vec::new());
        }
        let len = u64::from(size).min(file_size - off);
        let map = d.state.lock().meta.delta.clone();
        let mut buf = vec![0u8; len as usize];
        match &map {
            Some(m) => d.lower.view(Some((&d.upper, m))).read(&mut buf, off)?,
            None => read_full(&d.upper, &mut buf, off)?,
        }
        Ok(buf)
    }

    /// Write into a delta: fill partly written blocks from below, write, then claim.
    pub(crate) fn delta_write(&self, d: &DeltaFile, off: u64, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let mut st = d.state.lock();
        st.written = Some(std::time::Instant::now());
        let Some(map) = st.meta.delta.clone() else {
            d.upper.write_all_at(data, off)?;
            return Ok(data.len());
        };
        let b = map.block;
        let end = off + data.len() as u64;
        let first = off / b;
        let last = (end - 1) / b;
        let file_size = d.upper.metadata()?.len();
        for blk in [first, last] {
            let (bs, be) = (blk * b, (blk + 1) * b);
            let covered = off <= bs && end >= be;
            if covered || map.has(blk) || bs >= file_size {
                continue;
            }
            // Bring the rest of a partly written block up first, so the block is whole.
            let fill_len = be.min(file_size) - bs;
            let mut block = vec![0u8; fill_len as usize];
            for (src, o, n) in map.runs(bs, fill_len) {
                if src == Source::Lower {
                    let at = (o - bs) as usize;
                    d.lower.read(&mut block[at..at + n as usize], o)?;
                }
            }
            d.upper.write_all_at(&block, bs)?;
        }
        d.upper.write_all_at(data, off)?;
        let mut map = map;
        map.insert(first, last + 1);
        st.meta.delta = Some(map);
        self.delta_store(d, &mut st.meta)?;
        Ok(data.len())
    }

    /// Truncate a delta to `size`.
    pub(crate) fn delta_truncate(&self, d: &DeltaFile, size: u64) -> io::Result<()> {
        let mut st = d.state.lock();
        st.written = Some(std::time::Instant::now());
        if let Some(map) = st.meta.delta.as_mut() {
            map.truncate(size);
        }
        d.upper.set_len(size)?;
        self.delta_store(d, &mut st.meta)
    }

    /// Persist the record; a delta that covers enough of the file or whose block list
    /// grew too long is queued for compaction (the copy happens in the background, not in
    /// this request); a delta with nothing left below becomes a whole file now.
    fn delta_store(&self, d: &DeltaFile, meta: &mut Meta) -> io::Result<()> {
        let mut compact = false;
        if let Some(map) = &meta.delta {
            let size = d.upper.metadata()?.len();
            if map.nothing_below(size) {
                // Truncated to nothing below, or overwritten in full: nothing to copy, so
                // the record is dropped now (a file overwritten from start to end never
                // waits for the compaction worker's copy of the blocks it replaces).
                return self.delta_make_whole(d, meta);
            }
            let total = size.div_ceil(map.block).max(1);
            let ratio = self.opts.compact_ratio.clamp(0.0, 1.0);
            let dense = (map.blocks() as f64) > ratio * total as f64;
            let long = map.encode().len() > MAX_ENCODED;
            compact = dense || long;
        }
        match self.meta.write_fd(d.upper.as_fd(), meta) {
            Err(e)
                if meta.delta.is_some()
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::ENOSPC | libc::E2BIG | libc::ERANGE)
                    ) =>
            {
                // The record does not fit this filesystem's xattrs (a long lower path on
                // ext4, where one xattr must fit in a block): a whole file needs none.
                tracing::debug!(file = %d.path.display(), "delta record does not fit ({e}); making the file whole");
                return self.delta_make_whole(d, meta);
            }
            r => r?,
        }
        if compact && !self.queue_compaction(d) {
            return self.delta_make_whole(d, meta);
        }
        Ok(())
    }

    /// Copy every block still below into the upper file, then drop the delta record, all
    /// under the file's lock (for the cases that cannot wait: see delta_store).
    fn delta_make_whole(&self, d: &DeltaFile, meta: &mut Meta) -> io::Result<()> {
        if let Some(map) = meta.delta.clone() {
            let size = d.upper.metadata()?.len();
            // With nothing below, nothing is copied and nothing synced: the record only
            // named blocks the upper holds, so dropping it changes no byte of the file,
            // before a crash or after.
            if !map.nothing_below(size) {
                self.delta_copy_below(d, &map, size)?;
            }
            tracing::debug!(file = %d.path.display(), blocks = map.blocks(), "delta made whole");
        }
        meta.delta = None;
        meta.data = None;
        meta.ident = None;
        self.meta.write_fd(d.upper.as_fd(), meta)?;
        self.mark_whole(d.ino, &d.path);
        Ok(())
    }

    /// Copy the bytes of the upper file of `size` that `map` still reads from below into
    /// it, and make them durable before the record stops pointing below.
    fn delta_copy_below(&self, d: &DeltaFile, map: &DeltaMap, size: u64) -> io::Result<()> {
        let mut buf = Vec::new();
        for (src, o, n) in map.runs(0, size) {
            if src != Source::Lower {
                continue;
            }
            let mut pos = o;
            while pos < o + n {
                let chunk = (o + n - pos).min(1 << 20);
                buf.resize(chunk as usize, 0);
                d.lower.read(&mut buf, pos)?;
                d.upper.write_all_at(&buf, pos)?;
                pos += chunk;
            }
        }
        if !self.opts.no_fsync {
            d.upper.sync_data()?;
        }
        Ok(())
    }

    /// Make a delta whole now (used when a whole copy is needed anyway); readers and
    /// writers go on meanwhile (see compact.rs).
    pub(crate) fn delta_make_whole_now(&self, d: &DeltaFile) -> io::Result<()> {
        self.compact_delta(d, None).map(drop)
    }

    /// `strata compact`: make the delta behind node `ino` a whole file now.
    pub fn compact(&self, ino: u64) -> io::Result<()> {
        let (path, place) = self.node_info(ino)?;
        if !place.metacopy() {
            return Ok(());
        }
        let Some(d) = self.delta_file(ino, &path)? else {
            return Ok(());
        };
        self.delta_make_whole_now(&d)
    }

    /// After a delta became whole, its node's data lives in the upper only.
    pub(crate) fn mark_whole(&self, ino: u64, path: &Path) {
        if let Ok((_, place)) = self.node_info(ino) {
            self.set_place(
                ino,
                path,
                Placement {
                    lower: None,
                    delta: false,
                    ..place
                },
            );
        }
    }

    /// Record in the node whether its file is still a delta after an operation on it.
    pub(crate) fn note_delta_state(&self, ino: u64, path: &Path, place: &Placement, d: &DeltaFile) {
        if d.is_whole() {
            self.mark_whole(ino, path);
        } else if !place.delta {
            // Readers of the metadata-only copy read the lower file: they must see the
            // blocks written into the delta from now on.
            self.handles.mark_moved(ino);
            self.set_place(
                ino,
                path,
                Placement {
                    delta: true,
                    ..place.clone()
                },
            );
        }
    }

    /// Whether writing to a node with placement `place` (at `path`) should go through a
    /// delta: it already is one, or its data is still below and big enough.
    pub(crate) fn wants_delta(&self, path: &Path, place: &Placement) -> bool {
        if place.delta {
            return true;
        }
        if place.kind != libc::S_IFREG || self.opts.delta_threshold == u64::MAX {
            return false;
        }
        if place.metacopy() {
            return self
                .upper()
                .and_then(|u| u.stat(path))
                .is_ok_and(|st| st.st_size.max(0) as u64 >= self.opts.delta_threshold);
        }
        if place.upper {
            return false;
        }
        let Some((layer, p)) = &place.lower else {
            return false;
        };
        let Ok(st) = self.branch(Layer::Lower(*layer)).and_then(|b| b.stat(p)) else {
            return false;
        };
        // Lower hard links go through the index whole, so all their names stay one inode.
        st.st_nlink <= 1 && st.st_size.max(0) as u64 >= self.opts.delta_threshold
    }
}
