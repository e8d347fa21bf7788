//! Writing eStargz: a layer's kept tar is re-framed, not re-ordered. Tar headers go into one
//! gzip member, each regular file's payload (in [`CHUNK`]-sized pieces) into members of its
//! own, then the TOC entry and the end of the archive, then the footer. The uncompressed
//! stream is the original tar with the TOC entry added, so its diff_id changes.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::err;
use crate::util::{hex, Ctx, Result};

use super::{footer, Toc, TocEntry, CHUNK, TOC_NAME};

/// What a conversion made.
#[derive(Debug, Clone)]
pub struct Written {
    /// "sha256:<hex>" of the blob.
    pub digest: String,
    /// Blob size.
    pub size: u64,
    /// "sha256:<hex>" of the TOC JSON.
    pub toc_digest: String,
    /// "sha256:<hex>" of the uncompressed stream (the new diff_id).
    pub diff_id: String,
    /// Size of the uncompressed stream.
    pub uncompressed: u64,
}

/// One tar entry as found in the source: where its header and payload are.
struct Item {
    file_pos: u64,
    entry: TocEntry,
}

/// Counts and hashes the compressed bytes on their way to the file.
struct Out<W: Write> {
    inner: W,
    count: u64,
    hash: Sha256,
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn rfc3339(secs: u64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn scan(tar_path: &Path) -> Result<Vec<Item>> {
    let f = File::open(tar_path).ctx(|| format!("cannot open {}", tar_path.display()))?;
    let mut ar = tar::Archive::new(BufReader::with_capacity(1 << 16, f));
    let mut items = Vec::new();
    let bad = |e: std::io::Error| err!("cannot read the layer tar {}: {e}", tar_path.display());
    for e in ar.entries().map_err(bad)? {
        let mut e = e.map_err(bad)?;
        let name = String::from_utf8(e.path_bytes().into_owned())
            .map_err(|_| err!("a layer path is not UTF-8: eStargz cannot name it"))?;
        let h = e.header();
        let kind = match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => "reg",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "hardlink",
            tar::EntryType::Char => "char",
            tar::EntryType::Block => "block",
            tar::EntryType::Fifo => "fifo",
            other => {
                return Err(err!(
                    "layer entry {name} has tar type {other:?}, which eStargz cannot hold"
                ))
            }
        };
        let link_name = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let mut entry = TocEntry {
            name,
            kind: kind.into(),
            size: if kind == "reg" { e.size() } else { 0 },
            modtime: rfc3339(h.mtime().unwrap_or(0)),
            link_name,
            mode: i64::from(h.mode().unwrap_or(0o644)),
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            user_name: h.username().ok().flatten().unwrap_or("").to_string(),
            group_name: h.groupname().ok().flatten().unwrap_or("").to_string(),
            dev_major: u64::from(h.device_major().ok().flatten().unwrap_or(0)),
            dev_minor: u64::from(h.device_minor().ok().flatten().unwrap_or(0)),
            ..Default::default()
        };
        if let Ok(Some(exts)) = e.pax_extensions() {
            for ext in exts.flatten() {
                if let Some(k) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    entry.xattrs.insert(
                        String::from_utf8_lossy(k).into_owned(),
                        base64::engine::general_purpose::STANDARD.encode(ext.value_bytes()),
                    );
                }
            }
        }
        items.push(Item {
            file_pos: e.raw_file_position(),
            entry,
        });
    }
    Ok(items)
}

type Member<'a> = flate2::write::GzEncoder<&'a mut Out<BufWriter<File>>>;

fn member<'a>(out: &'a mut Out<BufWriter<File>>) -> Member<'a> {
    flate2::GzBuilder::new()
        .mtime(0)
        .write(out, flate2::Compression::new(6))
}

/// Copy `len` bytes of `src` into the member and into every hash of `hashes`.
fn copy(
    src: &mut impl Read,
    len: u64,
    m: &mut Member<'_>,
    hashes: &mut [&mut Sha256],
) -> Result<()> {
    let mut left = len;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        src.read_exact(&mut buf[..want])
            .ctx(|| "the layer tar ended early")?;
        m.write_all(&buf[..want])
            .ctx(|| "cannot write the eStargz blob")?;
        for h in hashes.iter_mut() {
            h.update(&buf[..want]);
        }
        left -= want as u64;
    }
    Ok(())
}

/// Convert the uncompressed layer tar at `tar_path` into an eStargz blob at `out_path`.
pub fn convert(tar_path: &Path, out_path: &Path) -> Result<Written> {
    let items = scan(tar_path)?;
    let src_file = File::open(tar_path).ctx(|| format!("cannot open {}", tar_path.display()))?;
    let mut src = BufReader::with_capacity(1 << 16, src_file);
    src.seek(SeekFrom::Start(0))
        .ctx(|| "cannot read the layer tar")?;
    let file = File::create(out_path).ctx(|| format!("cannot create {}", out_path.display()))?;
    let mut out = Out {
        inner: BufWriter::with_capacity(1 << 16, file),
        count: 0,
        hash: Sha256::new(),
    };
    let mut diff = Sha256::new();
    let mut uncompressed = 0u64;
    let mut pos = 0u64;
    let mut entries = Vec::new();
    let fin = |m: Member<'_>| {
        m.finish()
            .map(|_| ())
            .ctx(|| "cannot write the eStargz blob")
    };
    let mut m = member(&mut out);
    for it in items {
        // Headers (and the previous payload's padding) stay in the current member.
        copy(&mut src, it.file_pos - pos, &mut m, &mut [&mut diff])?;
        uncompressed += it.file_pos - pos;
        pos = it.file_pos;
        if it.entry.kind != "reg" || it.entry.size == 0 {
            entries.push(it.entry);
            continue;
        }
        fin(m)?;
        let size = it.entry.size;
        let first = entries.len();
        let mut whole = Sha256::new();
        let mut off = 0u64;
        while off < size {
            let len = CHUNK.min(size - off);
            let mut e = if off == 0 {
                it.entry.clone()
            } else {
                TocEntry {
                    name: it.entry.name.clone(),
                    kind: "chunk".into(),
                    chunk_offset: off as i64,
                    ..Default::default()
                }
            };
            e.offset = out.count as i64;
            e.chunk_size = if off + len < size { len as i64 } else { 0 };
            let mut chunk = Sha256::new();
            let mut cm = member(&mut out);
            copy(
                &mut src,
                len,
                &mut cm,
                &mut [&mut diff, &mut whole, &mut chunk],
            )?;
            fin(cm)?;
            e.chunk_digest = format!("sha256:{}", hex(&chunk.finalize()));
            entries.push(e);
            off += len;
        }
        if let Some(e) = entries.get_mut(first) {
            e.digest = format!("sha256:{}", hex(&whole.finalize()));
        }
        uncompressed += size;
        pos += size;
        m = member(&mut out);
    }
    // The payload padding of the last entry, then drop the old end-of-archive.
    let pad = (512 - pos % 512) % 512;
    copy(&mut src, pad, &mut m, &mut [&mut diff])?;
    uncompressed += pad;
    fin(m)?;
    let toc = Toc {
        version: 1,
        entries,
    };
    let json = serde_json::to_vec(&toc).map_err(|e| err!("cannot encode the TOC: {e}"))?;
    let toc_digest = format!("sha256:{}", hex(&Sha256::digest(&json)));
    let toc_offset = out.count;
    let mut h = tar::Header::new_ustar();
    h.set_path(TOC_NAME).ctx(|| "cannot name the TOC")?;
    h.set_size(json.len() as u64);
    h.set_mode(0o444);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut tail = h.as_bytes().to_vec();
    tail.extend_from_slice(&json);
    tail.resize(tail.len().div_ceil(512) * 512 + 1024, 0);
    let mut tm = member(&mut out);
    tm.write_all(&tail)
        .ctx(|| "cannot write the eStargz blob")?;
    fin(tm)?;
    diff.update(&tail);
    uncompressed += tail.len() as u64;
    out.write_all(&footer(toc_offset))
        .ctx(|| "cannot write the eStargz blob")?;
    out.flush().ctx(|| "cannot write the eStargz blob")?;
    Ok(Written {
        digest: format!("sha256:{}", hex(&out.hash.finalize())),
        size: out.count,
        toc_digest,
        diff_id: format!("sha256:{}", hex(&diff.finalize())),
        uncompressed,
    })
}
