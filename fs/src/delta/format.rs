//! Block-level delta files: a write into a big lower file stores only the blocks written.
//!
//! A delta is an upper regular file of the file's logical size, sparse except for the blocks
//! written through the mount, plus a record in the meta xattr (see docs/format.md):
//!
//! ```text
//! data 0 var/lib/db.img      where the unwritten blocks come from (lower branch, path)
//! ident 1073741824 1700000000 123456789 4242   size, mtime s, mtime ns, st_ino of that file
//! delta 1 4096 1073741824    format version, block size, lower limit
//! blocks 1000-1001,5000-5004 block ranges present in the upper (half-open, sorted)
//! ```
//!
//! Byte `o` of the file reads from the upper if its block is listed, else from the lower
//! file if `o` is below the lower limit (the smallest size the file was ever truncated to,
//! so bytes past a truncation read as zeros), else as zero. Data is written before the
//! record that claims it, so a crash leaves every block old or new.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Format version written by this code.
pub const VERSION: u32 = 1;
/// Default block size.
pub const DEFAULT_BLOCK: u64 = 4096;
/// A delta whose block list would not fit the xattr comfortably is made whole instead.
pub const MAX_ENCODED: usize = 3000;
/// Smallest and largest block size, for the `delta_block` mount option and on disk.
pub const MIN_BLOCK: u64 = 512;
/// See [`MIN_BLOCK`].
pub const MAX_BLOCK: u64 = 1 << 24;

/// Whether `b` is an acceptable block size: a power of two from 512 bytes to 16 MiB. The
/// same rule holds for the mount option and for records read from disk, where a huge
/// value would make a 4 KiB write fill (and a read span) up to the whole file.
pub fn valid_block(b: u64) -> bool {
    b.is_power_of_two() && (MIN_BLOCK..=MAX_BLOCK).contains(&b)
}

/// Identity of the lower file a delta was made from; a change means the delta is void.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ident {
    /// st_size.
    pub size: u64,
    /// st_mtime seconds.
    pub mtime: i64,
    /// st_mtime nanoseconds.
    pub mtime_nsec: i64,
    /// st_ino.
    pub ino: u64,
}

impl Ident {
    /// The identity of a stat.
    pub fn of(st: &nix::sys::stat::FileStat) -> Ident {
        Ident {
            size: st.st_size.max(0) as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
            ino: st.st_ino,
        }
    }
}

/// The block map of a delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaMap {
    /// Block size in bytes.
    pub block: u64,
    /// Bytes at or past this offset never come from the lower file.
    pub limit: u64,
    /// Sorted, disjoint, non-adjacent half-open block ranges held in the upper.
    pub ranges: Vec<(u64, u64)>,
}

/// Where a run of bytes comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The upper file.
    Upper,
    /// The lower file.
    Lower,
    /// Zeros.
    Zero,
}

impl DeltaMap {
    /// An empty delta over a lower file of `size` bytes.
    pub fn new(block: u64, size: u64) -> DeltaMap {
        DeltaMap {
            block: block.max(1),
            limit: size,
            ranges: Vec::new(),
        }
    }

    /// Whether block `b` is in the upper.
    pub fn has(&self, b: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.1 <= b);
        self.ranges.get(i).is_some_and(|r| r.0 <= b)
    }

    /// Whether no byte of a file of `size` bytes comes from the lower file any more: every
    /// block below the lower limit is in the upper (the record then says nothing a whole
    /// file would not).
    pub fn nothing_below(&self, size: u64) -> bool {
        let need = size.min(self.limit).div_ceil(self.block);
        need == 0 || self.ranges.first().is_some_and(|r| r.0 == 0 && r.1 >= need)
    }

    /// Number of blocks in the upper.
    pub fn blocks(&self) -> u64 {
        self.ranges.iter().map(|r| r.1 - r.0).sum()
    }

    /// Add blocks `a..b`.
    pub fn insert(&mut self, a: u64, b: u64) {
        if a >= b {
            return;
        }
        let (mut a, mut b) = (a, b);
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        let mut placed = false;
        for &(x, y) in &self.ranges {
            if y < a {
                out.push((x, y));
            } else if b < x {
                if !placed {
                    out.push((a, b));
                    placed = true;
                }
                out.push((x, y));
            } else {
                a = a.min(x);
                b = b.max(y);
            }
        }
        if !placed {
            out.push((a, b));
        }
        out.sort_unstable();
        self.ranges = out;
    }

    /// Forget every block at or past block `b`.
    pub fn cut(&mut self, b: u64) {
        self.ranges.retain(|r| r.0 < b);
        if let Some(last) = self.ranges.last_mut() {
            last.1 = last.1.min(b);
        }
    }

    /// The file was truncated to `size`: later bytes never come from below or from stale
    /// upper blocks again.
    pub fn truncate(&mut self, size: u64) {
        self.limit = self.limit.min(size);
        self.cut(size.div_ceil(self.block));
    }

    /// Split `off..off+len` into runs by source.
    pub fn runs(&self, off: u64, len: u64) -> Vec<(Source, u64, u64)> {
        let mut out: Vec<(Source, u64, u64)> = Vec::new();
        let end = off.saturating_add(len);
        let mut pos = off;
        while pos < end {
            let b = pos / self.block;
            let block_end = ((b + 1) * self.block).min(end);
            let src = if self.has(b) {
                Source::Upper
            } else if pos < self.limit {
                Source::Lower
            } else {
                Source::Zero
            };
            // The lower limit can fall inside a block.
            let stop = if src == Source::Lower {
                block_end.min(self.limit)
            } else {
                block_end
            };
            match out.last_mut() {
                Some(last) if last.0 == src && last.1 + last.2 == pos => last.2 += stop - pos,
                _ => out.push((src, pos, stop - pos)),
            }
            pos = stop;
        }
        out
    }

    /// Serialize the `delta` and `blocks` lines.
    pub fn encode(&self) -> String {
        let blocks: Vec<String> = self
            .ranges
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect();
        format!(
            "delta {VERSION} {} {}\nblocks {}\n",
            self.block,
            self.limit,
            blocks.join(",")
        )
    }

    /// Parse the `delta` line's value and the `blocks` line's value.
    pub fn decode(delta: &str, blocks: Option<&str>) -> Result<DeltaMap, String> {
        let f: Vec<&str> = delta.split_whitespace().collect();
        let [version, block, limit] = f.as_slice() else {
            return Err(format!("bad delta header '{delta}'"));
        };
        if version.parse::<u32>().ok() != Some(VERSION) {
            return Err(format!("unknown delta format version '{version}'"));
        }
        let block: u64 = block
            .parse()
            .ok()
            .filter(|b| valid_block(*b))
            .ok_or_else(|| {
                format!("bad delta block size '{block}' (a power of two from 512 to 16M)")
            })?;
        let limit: u64 = limit
            .parse()
            .map_err(|_| format!("bad delta limit '{limit}'"))?;
        let mut ranges = Vec::new();
        for part in blocks.unwrap_or("").split(',').filter(|p| !p.is_empty()) {
            let (a, b) = part
                .split_once('-')
                .ok_or_else(|| format!("bad block range '{part}'"))?;
            let a: u64 = a.parse().map_err(|_| format!("bad block range '{part}'"))?;
            let b: u64 = b.parse().map_err(|_| format!("bad block range '{part}'"))?;
            if a >= b || ranges.last().is_some_and(|l: &(u64, u64)| l.1 >= a) {
                return Err(format!("block ranges out of order at '{part}'"));
            }
            ranges.push((a, b));
        }
        Ok(DeltaMap {
            block,
            limit,
            ranges,
        })
    }
}

/// Read `buf.len()` bytes at `off` from a file, zero-filling past its end.
pub fn read_full(f: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[done..].fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_merges_and_orders() {
        let mut m = DeltaMap::new(4096, 1 << 30);
        m.insert(10, 12);
        m.insert(2, 3);
        m.insert(12, 14);
        m.insert(5, 6);
        assert_eq!(m.ranges, vec![(2, 3), (5, 6), (10, 14)]);
        m.insert(3, 5);
        assert_eq!(m.ranges, vec![(2, 6), (10, 14)]);
        m.insert(0, 100);
        assert_eq!(m.ranges, vec![(0, 100)]);
        assert!(m.has(99) && !m.has(100));
    }

    #[test]
    fn runs_respect_limit_and_blocks() {
        let mut m = DeltaMap::new(4, 10);
        m.insert(1, 2);
        assert_eq!(
            m.runs(0, 16),
            vec![
                (Source::Lower, 0, 4),
                (Source::Upper, 4, 4),
                (Source::Lower, 8, 2),
                (Source::Zero, 10, 6)
            ]
        );
        m.truncate(6);
        assert_eq!(m.limit, 6);
        assert_eq!(m.ranges, vec![(1, 2)]);
        m.truncate(3);
        assert!(m.ranges.is_empty());
    }

    #[test]
    fn encoding_roundtrip_and_errors() {
        let mut m = DeltaMap::new(4096, 12345);
        m.insert(3, 9);
        m.insert(20, 21);
        let s = m.encode();
        let mut lines = s.lines();
        let d = lines.next().unwrap().strip_prefix("delta ").unwrap();
        let b = lines.next().unwrap().strip_prefix("blocks ").unwrap();
        assert_eq!(DeltaMap::decode(d, Some(b)).unwrap(), m);
        assert!(DeltaMap::decode("2 4096 1", None).is_err());
        assert!(DeltaMap::decode("1 4096", None).is_err());
        assert!(DeltaMap::decode("1 4096 1", Some("5-3")).is_err());
        assert!(DeltaMap::decode("1 4096 1", Some("1-3,2-4")).is_err());
        for bad in ["0", "1", "256", "4097", "33554432", "1099511627776", "x"] {
            assert!(
                DeltaMap::decode(&format!("1 {bad} 1"), None).is_err(),
                "block size {bad}"
            );
        }
        assert!(DeltaMap::decode("1 512 1", None).is_ok());
        assert!(DeltaMap::decode("1 16777216 1", None).is_ok());
    }
}
