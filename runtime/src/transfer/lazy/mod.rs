//! Lazy pulling of eStargz layers: at pull time only the footer and the TOC are fetched
//! (by range requests), the TOC checked against the manifest's annotation, and the layer
//! laid out as placeholders (layer::lazy). The union daemon's [`fill::Filler`] fetches a
//! file's chunks on its first open, and [`complete`] (the daemon's background prefetch, or
//! a later `strata pull`) downloads the whole blob, verified by digest and diff_id.

pub mod fill;

use std::io::Read;

use sha2::Digest;

use crate::err;
use crate::layer::lazy::{self, LazyState};
use crate::layer::toc::{parse_footer, FOOTER_LEN, MAX_TOC, TOC_DIGEST_ANNOTATION, TOC_NAME};
use crate::store::Store;
use crate::util::Result;

use super::media::Descriptor;
use super::registry::Client;

/// Lay out layer `diff_hex` lazily from descriptor `l` when it is eStargz (has the TOC
/// annotation); `Ok(false)` when it is not, and the caller pulls it whole.
pub fn prepare_layer(
    store: &Store,
    client: &mut Client,
    l: &Descriptor,
    diff_hex: &str,
    insecure: bool,
) -> Result<bool> {
    let Some(toc_digest) = l
        .annotations
        .as_ref()
        .and_then(|a| a.get(TOC_DIGEST_ANNOTATION))
        .cloned()
    else {
        return Ok(false);
    };
    let size = u64::try_from(l.size).unwrap_or(0);
    if size < FOOTER_LEN {
        return Err(err!("layer {}: too small to be eStargz", l.digest));
    }
    let foot = client.blob_range(&l.digest, size - FOOTER_LEN, size)?;
    let toc_offset = parse_footer(&foot).map_err(|e| err!("layer {}: {e}", l.digest))?;
    if toc_offset >= size - FOOTER_LEN || size - FOOTER_LEN - toc_offset > MAX_TOC {
        return Err(err!(
            "layer {}: its eStargz footer puts the TOC at {toc_offset}: refusing it",
            l.digest
        ));
    }
    let member = client.blob_range(&l.digest, toc_offset, size - FOOTER_LEN)?;
    let toc_bytes = toc_from_member(&member).map_err(|e| err!("layer {}: {e}", l.digest))?;
    let toc =
        lazy::verify_toc(&toc_bytes, &toc_digest).map_err(|e| err!("layer {}: {e}", l.digest))?;
    let state = LazyState {
        reference: client.reference.to_string(),
        insecure,
        digest: l.digest.clone(),
        size,
        toc_digest,
        toc_offset,
    };
    lazy::skeleton::build(store, diff_hex, &toc_bytes, &toc, &state)?;
    Ok(true)
}

/// The TOC JSON from its gzip member (a tar entry named `stargz.index.json`).
fn toc_from_member(member: &[u8]) -> Result<Vec<u8>> {
    let dec = flate2::read::GzDecoder::new(member).take(MAX_TOC + 4096);
    let mut ar = tar::Archive::new(dec);
    let bad = |e: std::io::Error| err!("its eStargz TOC cannot be read: {e}");
    let mut entries = ar.entries().map_err(bad)?;
    let mut e = entries
        .next()
        .ok_or_else(|| err!("its eStargz TOC entry is missing"))?
        .map_err(bad)?;
    if e.path_bytes().as_ref() != TOC_NAME.as_bytes() {
        return Err(err!("its TOC entry is not named {TOC_NAME}"));
    }
    let mut out = Vec::new();
    e.by_ref()
        .take(MAX_TOC + 1)
        .read_to_end(&mut out)
        .map_err(bad)?;
    if out.len() as u64 > MAX_TOC {
        return Err(err!("its eStargz TOC is larger than {MAX_TOC} bytes"));
    }
    Ok(out)
}

/// Hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hash: sha2::Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Download lazy layer `hex`'s whole blob (digest and diff_id verified) and complete it;
/// returns how many files were still pending.
pub fn complete(store: &Store, client: &mut Client, hex: &str) -> Result<usize> {
    let (state, _) = lazy::read(store, hex)?;
    let body = client.blob(&state.digest, Some(state.size))?;
    let mut r = Hashing {
        inner: body,
        hash: sha2::Sha256::new(),
    };
    let staged = crate::layer::stage(store, &mut r)?;
    // The footer (and anything after the tar's end) counts for the blob digest too.
    std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| err!("layer {}: {e}", state.digest))?;
    let got = format!("sha256:{}", crate::util::hex(&r.hash.finalize()));
    if got != state.digest {
        return Err(err!(
            "layer {}: the registry sent a blob with digest {got}: refusing it",
            state.digest
        ));
    }
    lazy::complete::complete_from(store, hex, staged)
}
