//! OCI image layout (a directory, or a tar of one: `oci-archive`): `oci-layout`, `index.json`
//! and content-addressed `blobs/sha256/<hex>`. Indexes may nest (multi-platform images).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use crate::err;
use crate::image::Reference;
use crate::util::{sha256_hex, Result};

use super::docker_archive::short;
use super::ingest::{parse_config, read_verified, Ingest, MAX_JSON};
use super::media::{self, digest_hex, Descriptor, Document, Index, Manifest};
use super::progress::Progress;
use super::source::Source;
use super::write::{ArchiveWriter, SaveImage};

/// Nesting of indexes deeper than this is refused.
const MAX_DEPTH: usize = 4;

/// Whether a source looks like an OCI layout.
pub fn detect(src: &dyn Source) -> bool {
    src.exists("oci-layout") && src.exists("index.json")
}

fn blob_path(d: &Descriptor) -> Result<String> {
    Ok(format!("blobs/sha256/{}", digest_hex(&d.digest)?))
}

fn size_of(d: &Descriptor) -> Option<u64> {
    u64::try_from(d.size).ok().filter(|s| *s > 0)
}

/// The name to tag an index entry with: a full reference from containerd's annotation or
/// from ref.name when it is one; a bare tag ("latest") names no repository and tags nothing.
fn tag_of(d: &Descriptor) -> Result<Option<Reference>> {
    let ann = d.annotations.as_ref();
    let full = ann.and_then(|a| a.get(media::CONTAINERD_NAME)).or_else(|| {
        ann.and_then(|a| a.get(media::REF_NAME))
            .filter(|r| r.contains('/') || r.contains(':'))
    });
    match full {
        Some(r) => Reference::parse(r)
            .map(Some)
            .map_err(|e| err!("image name {r:?} in index.json: {e}")),
        None => Ok(None),
    }
}

struct Loader<'a, 'b, 's> {
    src: &'a dyn Source,
    ingest: &'b mut Ingest<'s>,
    progress: &'a Progress,
    visited: HashSet<String>,
}

impl Loader<'_, '_, '_> {
    fn visit(&mut self, d: &Descriptor, tag: Option<Reference>, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(err!(
                "indexes nest deeper than {MAX_DEPTH} levels at {}: refusing a manifest loop",
                d.digest
            ));
        }
        if depth > 0 && !self.visited.insert(d.digest.clone()) {
            return Err(err!(
                "{} is reached twice: refusing a manifest loop",
                d.digest
            ));
        }
        let what = format!("manifest {}", d.digest);
        let bytes = read_verified(self.src.open(&blob_path(d)?)?, &d.digest, size_of(d), &what)?;
        match media::parse_document(&bytes, &d.media_type)? {
            Document::Index(idx) => {
                let child = media::select_platform(&idx, &what)?.clone();
                if child.digest == d.digest {
                    return Err(err!("{what} lists itself: refusing a manifest loop"));
                }
                self.visit(&child, tag, depth + 1)
            }
            Document::Manifest(m) => self.image(&m, tag),
        }
    }

    fn image(&mut self, m: &Manifest, tag: Option<Reference>) -> Result<()> {
        let config = read_verified(
            self.src.open(&blob_path(&m.config)?)?,
            &m.config.digest,
            size_of(&m.config),
            &format!("image config {}", m.config.digest),
        )?;
        let cfg = parse_config(&config)?;
        if cfg.rootfs.diff_ids.len() != m.layers.len() {
            return Err(err!(
                "the manifest lists {} layers but the image config has {} diff_ids: the layout is corrupt",
                m.layers.len(),
                cfg.rootfs.diff_ids.len()
            ));
        }
        for (l, diff_id) in m.layers.iter().zip(&cfg.rootfs.diff_ids) {
            if !media::is_layer(&l.media_type) {
                return Err(err!(
                    "layer {} has media type {:?}, which strata cannot unpack",
                    l.digest,
                    l.media_type
                ));
            }
            let what = format!("layer {}", l.digest);
            let reader = self.src.open(&blob_path(l)?)?;
            let bar = self.progress.bar(&short(&l.digest), size_of(l));
            bar.message(if self.ingest.has_layer(digest_hex(diff_id)?) {
                "exists"
            } else {
                "loading"
            });
            self.ingest.add_layer(
                bar.reader(reader),
                diff_id,
                Some((&l.digest, size_of(l))),
                &what,
            )?;
            bar.finish("done");
        }
        self.ingest.add_image(config, tag.into_iter().collect())
    }
}

/// Verify and stage every image an OCI layout's index.json names.
pub fn load(src: &dyn Source, ingest: &mut Ingest<'_>, progress: &Progress) -> Result<()> {
    let layout = src.read_small("oci-layout", 4096)?;
    let v: serde_json::Value = serde_json::from_slice(&layout)
        .map_err(|e| err!("oci-layout is not valid JSON ({e}): not an OCI layout"))?;
    if v.get("imageLayoutVersion").and_then(|x| x.as_str()) != Some("1.0.0") {
        return Err(err!(
            "unsupported OCI layout version {}: expected 1.0.0",
            v.get("imageLayoutVersion")
                .unwrap_or(&serde_json::Value::Null)
        ));
    }
    let raw = src.read_small("index.json", MAX_JSON)?;
    let index: Index = serde_json::from_slice(&raw)
        .map_err(|e| err!("index.json is not a valid OCI index ({e}): the layout is corrupt"))?;
    if index.manifests.is_empty() {
        return Err(err!("index.json lists no image"));
    }
    let mut l = Loader {
        src,
        ingest,
        progress,
        visited: HashSet::new(),
    };
    for d in &index.manifests {
        l.visited.clear();
        let tag = tag_of(d)?;
        l.visit(d, tag, 0)?;
    }
    Ok(())
}

/// The OCI manifest strata writes for a stored image (uncompressed layers, byte-stable).
pub fn manifest_for(img: &SaveImage, layers: Vec<Descriptor>) -> Manifest {
    Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: media::OCI_CONFIG.into(),
            digest: format!("sha256:{}", img.config_hex),
            size: img.config.len() as i64,
            ..Default::default()
        },
        layers,
        annotations: None,
    }
}

/// Write images as an OCI layout (tar or directory): one manifest per image, one index entry
/// per tag (an untagged image gets an entry without a name).
pub fn save<W: Write>(images: &[SaveImage], w: &mut ArchiveWriter<'_, W>) -> Result<()> {
    let mut entries = Vec::new();
    for img in images {
        w.blob(&img.config_hex, &img.config)?;
        let mut layers = Vec::new();
        for (hex, size) in img.layers.iter().zip(&img.layer_sizes) {
            w.layer_tar(img, hex)?;
            layers.push(Descriptor {
                media_type: media::OCI_LAYER_TAR.into(),
                digest: format!("sha256:{hex}"),
                size: *size as i64,
                ..Default::default()
            });
        }
        let m = manifest_for(img, layers);
        let bytes = serde_json::to_vec(&m).map_err(|e| err!("cannot encode a manifest: {e}"))?;
        let hex = sha256_hex(&bytes);
        w.blob(&hex, &bytes)?;
        let desc = |ann: Option<BTreeMap<String, String>>| Descriptor {
            media_type: media::OCI_MANIFEST.into(),
            digest: format!("sha256:{hex}"),
            size: bytes.len() as i64,
            annotations: ann,
            ..Default::default()
        };
        if img.tags.is_empty() {
            entries.push(desc(None));
        }
        for t in &img.tags {
            let mut ann = BTreeMap::new();
            ann.insert(media::REF_NAME.to_string(), t.clone());
            ann.insert(media::CONTAINERD_NAME.to_string(), t.clone());
            entries.push(desc(Some(ann)));
        }
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        manifests: entries,
        annotations: None,
    };
    w.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let bytes = serde_json::to_vec(&index).map_err(|e| err!("cannot encode index.json: {e}"))?;
    w.file("index.json", &bytes)?;
    Ok(())
}
