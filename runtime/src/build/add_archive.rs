//! ADD's local archives: a tar, plain or compressed (gzip, zstd, xz, bzip2), recognised by
//! its bytes as docker does (a file named `.tar` that is no tar is copied as it is), and
//! unpacked into the container through `cp`'s in-root extraction (no `..`, no absolute
//! names, never through a symlink).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::container::cp::{self, CpOptions, HostEnd};
use crate::store::Store;
use crate::util::{Ctx, Result};

/// `reader` decompressed according to its first bytes.
fn decoded<'a>(reader: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut b = BufReader::with_capacity(1 << 16, reader);
    let head = b.fill_buf().ctx(|| "cannot read an ADD source")?;
    Ok(if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(xz2::bufread::XzDecoder::new_multi_decoder(b))
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::bufread::MultiBzDecoder::new(b))
    } else {
        crate::layer::compression::decompressed(b)?
    })
}

/// Whether the staged source `p` is an archive ADD unpacks: a regular file whose
/// (decompressed) start is a valid tar header.
pub fn is_archive(p: &Path) -> Result<bool> {
    let md = std::fs::symlink_metadata(p).ctx(|| format!("cannot read {}", p.display()))?;
    if !md.is_file() || md.len() == 0 {
        return Ok(false);
    }
    let f = File::open(p).ctx(|| format!("cannot open {}", p.display()))?;
    let Ok(r) = decoded(f) else {
        return Ok(false);
    };
    let mut block = [0u8; 512];
    let mut r = r;
    let mut got = 0;
    while got < block.len() {
        match r.read(&mut block[got..]) {
            Ok(0) | Err(_) => return Ok(false),
            Ok(n) => got += n,
        }
    }
    let h = tar::Header::from_byte_slice(&block);
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum();
    Ok(block.iter().any(|b| *b != 0) && h.cksum().is_ok_and(|c| c == sum))
}

/// Unpack the archive `p` into the directory `dest` of container `id`, owners as recorded.
pub fn unpack(store: &Store, id: &str, dest: &str, p: &Path) -> Result<()> {
    let f = File::open(p).ctx(|| format!("cannot open {}", p.display()))?;
    let mut r = decoded(f)?;
    cp::copy_in(
        store,
        id,
        dest,
        HostEnd::TarIn(&mut r),
        CpOptions {
            archive: true,
            follow: false,
        },
    )
}
