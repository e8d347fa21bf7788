//! The JSON documents images travel in: OCI and Docker v2 manifests and indexes, descriptors,
//! and the checks every digest goes through before it names a file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::err;
use crate::util::Result;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign (non-distributable) layer.
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Annotation naming an image in an OCI layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and Docker ≥25's) annotation with the full image name.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// What a manifest or index points at.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    #[serde(default)]
    pub media_type: String,
    /// "sha256:<hex>".
    pub digest: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: i64,
    /// Platform (in an index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Alternate locations (foreign layers); strata never fetches them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// CPU variant (v8, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker v2 schema 2: the same shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type (optional in OCI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// Layer blobs, bottom first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type (optional in OCI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Entries.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A manifest-or-index document, told apart by media type or by shape.
pub enum Document {
    /// A single-image manifest.
    Manifest(Manifest),
    /// An index of manifests (multi-platform, or the top of a layout).
    Index(Index),
}

/// Parse a manifest or index; `media_type` is the descriptor's or the HTTP Content-Type.
pub fn parse_document(bytes: &[u8], media_type: &str) -> Result<Document> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        schema_version: u32,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        config: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| err!("the manifest is not valid JSON ({e}): the source is corrupt"))?;
    if probe.schema_version == 1 {
        return Err(err!(
            "Docker schema 1 manifests are not supported: re-push the image with a current tool"
        ));
    }
    let mt = probe
        .media_type
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| media_type.to_string());
    let is_index = mt == OCI_INDEX
        || mt == DOCKER_LIST
        || (mt != OCI_MANIFEST && mt != DOCKER_MANIFEST && probe.manifests.is_some());
    if is_index {
        let idx: Index =
            serde_json::from_slice(bytes).map_err(|e| err!("invalid image index: {e}"))?;
        return Ok(Document::Index(idx));
    }
    if probe.config.is_none() {
        return Err(err!(
            "unsupported manifest (media type {mt:?}): expected an OCI or Docker v2 image manifest or index"
        ));
    }
    let m: Manifest =
        serde_json::from_slice(bytes).map_err(|e| err!("invalid image manifest: {e}"))?;
    Ok(Document::Manifest(m))
}

/// The hex of a "sha256:<64 hex>" digest; anything else (other algorithms, path tricks) is
/// refused, so a digest can safely name a file.
pub fn digest_hex(digest: &str) -> Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| err!("unsupported digest {digest:?}: only sha256 is supported"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(err!("malformed digest {digest:?}"));
    }
    Ok(hex)
}

/// Check the diff_ids of an image config before they name layer directories.
pub fn check_diff_ids(cfg: &crate::image::ImageConfig) -> Result<()> {
    for d in &cfg.rootfs.diff_ids {
        digest_hex(d).map_err(|e| err!("image config: {e}"))?;
    }
    Ok(())
}

/// Is this a layer media type strata can unpack (tar, gzip or zstd; OCI or Docker)?
pub fn is_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_LAYER_TAR
            | OCI_LAYER_GZIP
            | OCI_LAYER_ZSTD
            | DOCKER_LAYER_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | DOCKER_LAYER_FOREIGN
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd"
    ) || media_type.is_empty()
}

/// Pick the entry of an index for this machine (linux and this architecture).
pub fn select_platform<'a>(index: &'a Index, what: &str) -> Result<&'a Descriptor> {
    let arch = crate::image::commands::arch();
    let candidates: Vec<&Descriptor> = index.manifests.iter().collect();
    let chosen = candidates.iter().find(|d| match &d.platform {
        Some(p) => p.os == "linux" && p.architecture == arch,
        None => false,
    });
    if let Some(d) = chosen {
        return Ok(d);
    }
    // Single-entry indexes without a platform (OCI layouts, nested indexes) mean "this image".
    if candidates.len() == 1 && candidates[0].platform.is_none() {
        return Ok(candidates[0]);
    }
    let have: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| format!("{}/{}", p.os, p.architecture))
        .collect();
    Err(err!(
        "{what} has no image for linux/{arch} (it has: {}): pull another tag",
        if have.is_empty() {
            "none".to_string()
        } else {
            have.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_strict() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(digest_hex(&good).is_ok());
        assert!(digest_hex("sha256:../../etc").is_err());
        assert!(digest_hex(&format!("sha512:{}", "a".repeat(128))).is_err());
        assert!(digest_hex(&format!("sha256:{}", "A".repeat(64))).is_err());
    }

    #[test]
    fn documents_are_told_apart() {
        let idx = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse_document(idx, ""), Ok(Document::Index(_))));
        let m = br#"{"schemaVersion":2,"config":{"digest":"sha256:x","size":1},"layers":[]}"#;
        assert!(matches!(parse_document(m, ""), Ok(Document::Manifest(_))));
        assert!(parse_document(br#"{"schemaVersion":1}"#, "").is_err());
    }
}
