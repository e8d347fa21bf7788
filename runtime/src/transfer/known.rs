//! What strata knows of a layer's compressed forms in registries: for each diff_id, the blob
//! digests (gzip or zstd) it has been pulled as or pushed as, and the repositories that hold
//! them. A push then skips blobs a repository has (HEAD) or mounts them from a sibling
//! repository without compressing anything.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::store::Store;
use crate::util::{read_json, write_json, Result};

/// One compressed blob of a layer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Form {
    /// "sha256:<hex>" of the blob.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// OCI media type (tar+gzip, tar+zstd).
    pub media_type: String,
    /// `registry/repository` locations known to hold it.
    #[serde(default)]
    pub locations: Vec<String>,
    /// Made by strata's own deterministic gzip (so a re-push gives the same digest).
    #[serde(default)]
    pub ours: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Known {
    forms: Vec<Form>,
}

fn path(store: &Store, diff_hex: &str) -> PathBuf {
    store.root.join("transfer").join(format!("{diff_hex}.json"))
}

/// Known forms of a layer (none when never pulled or pushed).
pub fn forms(store: &Store, diff_hex: &str) -> Vec<Form> {
    read_json::<Known>(&path(store, diff_hex))
        .map(|k| k.forms)
        .unwrap_or_default()
}

/// Map Docker layer types to their OCI names (a pushed manifest is OCI).
pub fn oci_layer_type(media_type: &str) -> String {
    match media_type {
        super::media::DOCKER_LAYER_GZIP | super::media::DOCKER_LAYER_FOREIGN => {
            super::media::OCI_LAYER_GZIP.into()
        }
        "application/vnd.docker.image.rootfs.diff.tar.zstd" => super::media::OCI_LAYER_ZSTD.into(),
        "application/vnd.docker.image.rootfs.diff.tar" => super::media::OCI_LAYER_TAR.into(),
        m if m.starts_with("application/vnd.oci.image.layer.nondistributable.v1.") => m.replace(
            "application/vnd.oci.image.layer.nondistributable.v1.",
            "application/vnd.oci.image.layer.v1.",
        ),
        "" => super::media::OCI_LAYER_GZIP.into(),
        m => m.to_string(),
    }
}

/// Remember that `location` holds `form` of a layer (hold the exclusive store lock).
pub fn remember(store: &Store, diff_hex: &str, form: &Form, location: &str) -> Result<()> {
    let p = path(store, diff_hex);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| crate::err!("cannot create {}: {e}", dir.display()))?;
    }
    let mut k: Known = read_json(&p).unwrap_or_default();
    match k.forms.iter_mut().find(|f| f.digest == form.digest) {
        Some(f) => {
            if !f.locations.iter().any(|l| l == location) {
                f.locations.push(location.to_string());
            }
            f.ours |= form.ours;
        }
        None => {
            let mut f = form.clone();
            f.locations = vec![location.to_string()];
            k.forms.push(f);
        }
    }
    write_json(&p, &k)
}
