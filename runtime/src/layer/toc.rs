//! The eStargz table of contents and footer (containerd/stargz-snapshotter
//! docs/estargz.md): what the push side writes and the lazy pull side reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::err;
use crate::util::Result;

/// The descriptor annotation holding the TOC's digest (what makes the TOC verifiable).
pub const TOC_DIGEST_ANNOTATION: &str = "containerd.io/snapshot/stargz/toc.digest";
/// The descriptor annotation holding the uncompressed size of the blob.
pub const UNCOMPRESSED_SIZE_ANNOTATION: &str = "io.containers.estargz.uncompressed-size";
/// Name of the TOC's tar entry.
pub const TOC_NAME: &str = "stargz.index.json";
/// Length of the footer.
pub const FOOTER_LEN: u64 = 51;
/// Chunk size for big files: each chunk is its own gzip member and digest.
pub const CHUNK: u64 = 4 << 20;
/// Largest TOC strata reads (it is held in memory; real ones are a few hundred KiB).
pub const MAX_TOC: u64 = 64 << 20;

/// The table of contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Toc {
    /// Always 1.
    pub version: u32,
    /// Every tar entry and chunk but the TOC itself, in blob order.
    pub entries: Vec<TocEntry>,
}

/// One file or chunk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TocEntry {
    /// Path in the tar.
    pub name: String,
    /// dir, reg, symlink, hardlink, char, block, fifo or chunk.
    #[serde(rename = "type")]
    pub kind: String,
    /// Uncompressed size of a regular file.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// RFC 3339 modification time.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub modtime: String,
    /// Link target.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub link_name: String,
    /// Mode bits.
    #[serde(default)]
    pub mode: i64,
    /// Owner.
    #[serde(default)]
    pub uid: u64,
    /// Group.
    #[serde(default)]
    pub gid: u64,
    /// Owner's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    /// Group's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group_name: String,
    /// Device major.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dev_major: u64,
    /// Device minor.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dev_minor: u64,
    /// Extended attributes, values base64 (Go's []byte in JSON).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
    /// Digest of the whole file's contents.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Offset in the blob of the gzip member holding this chunk.
    #[serde(default, skip_serializing_if = "is_zero_i")]
    pub offset: i64,
    /// Offset of the chunk in the file.
    #[serde(default, skip_serializing_if = "is_zero_i")]
    pub chunk_offset: i64,
    /// Uncompressed size of the chunk (0 for the last one).
    #[serde(default, skip_serializing_if = "is_zero_i")]
    pub chunk_size: i64,
    /// Digest of the chunk's uncompressed bytes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chunk_digest: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_zero_i(v: &i64) -> bool {
    *v == 0
}

/// The footer: an empty gzip member whose extra field names the TOC's offset.
pub fn footer(toc_offset: u64) -> Vec<u8> {
    let mut f = vec![
        0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 26, 0, b'S', b'G', 22, 0,
    ];
    f.extend_from_slice(format!("{toc_offset:016x}STARGZ").as_bytes());
    // A final stored block of length 0, then CRC32 and ISIZE of nothing.
    f.extend_from_slice(&[1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
    f
}

/// The TOC's offset from a footer, or why it is not one.
pub fn parse_footer(f: &[u8]) -> Result<u64> {
    let ok = f.len() == FOOTER_LEN as usize
        && f[..4] == [0x1f, 0x8b, 8, 4]
        && f[10..16] == [26, 0, b'S', b'G', 22, 0]
        && &f[32..38] == b"STARGZ";
    let hex = std::str::from_utf8(f.get(16..32).unwrap_or_default()).unwrap_or("");
    match u64::from_str_radix(hex, 16) {
        Ok(off) if ok => Ok(off),
        _ => Err(err!("the layer has no eStargz footer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_round_trips_and_is_an_empty_gzip_member() {
        let f = footer(0x1234);
        assert_eq!(f.len() as u64, FOOTER_LEN);
        assert_eq!(parse_footer(&f).ok(), Some(0x1234));
        let mut out = Vec::new();
        let r = std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&f[..]), &mut out);
        assert!(r.is_ok());
        assert!(out.is_empty());
    }
}
