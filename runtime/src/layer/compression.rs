//! Layer compression: detect gzip and zstd by their magic numbers, decompress on the fly,
//! and gzip deterministically for pushes.

use std::io::{BufRead, BufReader, Read, Write};

use crate::util::{Ctx, Result};

/// How a blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Zstandard.
    Zstd,
}

/// The compression of a stream, from its first bytes.
pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A reader yielding the uncompressed bytes of `reader`, whatever its compression (detected
/// by magic, so a media type that lies about it does no harm).
pub fn decompressed<'a, R: Read + 'a>(reader: R) -> Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(1 << 16, reader);
    let head = buffered.fill_buf().ctx(|| "cannot read the blob")?;
    Ok(match detect(head) {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .ctx(|| "cannot start zstd decompression")?,
        ),
    })
}

/// Gzip `reader` into `out` deterministically: no file name, mtime 0, fixed level, so the
/// same tar always gives the same blob digest.
pub fn gzip<R: Read, W: Write>(mut reader: R, out: W) -> Result<W> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(out, flate2::Compression::new(6));
    std::io::copy(&mut reader, &mut enc).ctx(|| "cannot compress the layer")?;
    enc.finish().ctx(|| "cannot compress the layer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_compression() {
        let data = b"hello layer".repeat(1000);
        let gz = gzip(&data[..], Vec::new()).unwrap_or_default();
        assert_eq!(detect(&gz), Compression::Gzip);
        let zs = zstd::encode_all(&data[..], 3).unwrap_or_default();
        assert_eq!(detect(&zs), Compression::Zstd);
        for blob in [data.clone(), gz.clone(), zs] {
            let mut out = Vec::new();
            let r = decompressed(&blob[..]).map(|mut r| r.read_to_end(&mut out));
            assert!(r.is_ok());
            assert_eq!(out, data);
        }
        assert_eq!(gzip(&data[..], Vec::new()).unwrap_or_default(), gz);
    }
}
