//! docker-archive: what `docker save` and `podman save` write. A tar with `manifest.json`
//! (one entry per image: config path, tags, layer paths), either in the legacy layout
//! (`<id>/layer.tar`, `<hex>.json`) or Docker ≥25's `blobs/sha256/<hex>`.

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::err;
use crate::image::Reference;
use crate::util::{sha256_hex, Result};

use super::ingest::{parse_config, Ingest, MAX_JSON};
use super::progress::Progress;
use super::source::Source;
use super::write::{ArchiveWriter, SaveImage};

/// One entry of manifest.json.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    layer_sources: Option<BTreeMap<String, serde_json::Value>>,
}

/// The sha256 a path names, when it is content-addressed (`blobs/sha256/<hex>`, `<hex>.json`;
/// not `<id>/layer.tar`, whose legacy ids are not digests, nor `<hex>.tar`, which may name the
/// diff_id of a compressed blob: the diff_id check covers those).
fn digest_in_path(path: &str) -> Option<String> {
    let p = super::source::normalize(path).ok()?;
    let name = p
        .strip_prefix("blobs/sha256/")
        .or_else(|| p.strip_suffix(".json"))?;
    let ok = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| format!("sha256:{}", name.to_ascii_lowercase()))
}

/// Whether a source looks like a docker-archive.
pub fn detect(src: &dyn Source) -> bool {
    src.exists("manifest.json")
}

/// Verify and stage every image of a docker-archive.
pub fn load(src: &dyn Source, ingest: &mut Ingest<'_>, progress: &Progress) -> Result<()> {
    let raw = src.read_small("manifest.json", MAX_JSON)?;
    let entries: Vec<Entry> = serde_json::from_slice(&raw).map_err(|e| {
        err!("manifest.json of the archive is not valid ({e}): the archive is corrupt")
    })?;
    if entries.is_empty() {
        return Err(err!("manifest.json of the archive lists no image"));
    }
    for (n, e) in entries.iter().enumerate() {
        let config = src.read_small(&e.config, MAX_JSON)?;
        if let Some(d) = digest_in_path(&e.config) {
            let got = format!("sha256:{}", sha256_hex(&config));
            if got != d {
                return Err(err!(
                    "image config {}: content has digest {got}: the archive is corrupt or was tampered with",
                    e.config
                ));
            }
        }
        let cfg = parse_config(&config)?;
        let diff_ids = &cfg.rootfs.diff_ids;
        if diff_ids.len() != e.layers.len() {
            return Err(err!(
                "image {n} of the archive lists {} layers but its config has {} diff_ids: the archive is corrupt",
                e.layers.len(),
                diff_ids.len()
            ));
        }
        for (path, diff_id) in e.layers.iter().zip(diff_ids) {
            let what = format!("layer {path}");
            let reader = src.open(path)?;
            let bar = progress.bar(&short(diff_id), None);
            let blob = digest_in_path(path);
            let blob = blob.as_deref().map(|d| (d, None));
            if ingest.has_layer(super::media::digest_hex(diff_id)?) {
                bar.message("exists");
            } else {
                bar.message("loading");
            }
            ingest.add_layer(bar.reader(reader), diff_id, blob, &what)?;
            bar.finish("done");
        }
        let mut tags = Vec::new();
        for t in e.repo_tags.iter().flatten() {
            tags.push(Reference::parse(t).map_err(|err| err!("tag {t:?} in the archive: {err}"))?);
        }
        ingest.add_image(config, tags)?;
    }
    Ok(())
}

/// "sha256:abcdef012345" → "abcdef012345".
pub fn short(digest: &str) -> String {
    digest
        .strip_prefix("sha256:")
        .unwrap_or(digest)
        .chars()
        .take(12)
        .collect()
}

/// Write images as a docker-archive (Docker ≥25 layout: blobs/sha256 plus manifest.json).
pub fn save<W: Write>(images: &[SaveImage], w: &mut ArchiveWriter<W>) -> Result<()> {
    let mut entries = Vec::new();
    for img in images {
        w.blob(&img.config_hex, &img.config)?;
        let mut layers = Vec::new();
        for hex in &img.layers {
            w.layer_tar(img, hex)?;
            layers.push(format!("blobs/sha256/{hex}"));
        }
        entries.push(Entry {
            config: format!("blobs/sha256/{}", img.config_hex),
            repo_tags: Some(img.tags.clone()),
            layers,
            layer_sources: None,
        });
    }
    let manifest =
        serde_json::to_vec(&entries).map_err(|e| err!("cannot encode manifest.json: {e}"))?;
    w.file("manifest.json", &manifest)?;
    // Legacy readers look for `repositories`; an empty map is valid and harmless.
    w.file("repositories", b"{}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_from_paths() {
        let h = "ab".repeat(32);
        assert_eq!(
            digest_in_path(&format!("blobs/sha256/{h}")),
            Some(format!("sha256:{h}"))
        );
        assert_eq!(
            digest_in_path(&format!("{h}.json")),
            Some(format!("sha256:{h}"))
        );
        assert_eq!(digest_in_path(&format!("{h}/layer.tar")), None);
    }
}
