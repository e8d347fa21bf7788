//! Layers: extracted once under layers/<diff_id hex>/ and shared by every image that lists them.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::err;
use crate::store::{remove_tree, Store};
use crate::util::{now_secs, read_json, write_json, Ctx, Result};

/// Metadata kept beside each extracted layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerInfo {
    /// "sha256:<hex>" of the uncompressed tar.
    pub diff_id: String,
    /// Apparent size of the extracted files, bytes.
    pub size: u64,
    /// Seconds since the epoch when first stored.
    pub created: i64,
}

/// A layer extracted into the staging area, not yet in the store.
pub struct Staged {
    dir: PathBuf,
    /// sha256 hex of the uncompressed tar.
    pub diff_hex: String,
}

impl Staged {
    fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
    }
}

/// Extract a layer tar into the staging area (no store lock needed: the directory is private).
pub fn stage(store: &Store, reader: impl Read) -> Result<Staged> {
    stage_opts(store, reader, false)
}

/// [`stage`], accepting an empty layer when `allow_empty`.
pub fn stage_opts(store: &Store, reader: impl Read, allow_empty: bool) -> Result<Staged> {
    let dir = store.staging_dir("layer")?;
    let mut staged = Staged {
        dir,
        diff_hex: String::new(),
    };
    std::fs::create_dir(staged.tree())
        .ctx(|| format!("cannot create {}", staged.tree().display()))?;
    let x = crate::tar_import::extract_opts(reader, &staged.tree(), allow_empty)?;
    staged.diff_hex = x.diff_hex;
    Ok(staged)
}

/// Move a staged layer into the store (hold the exclusive lock). A layer already present
/// (same diff_id) is kept and the staged copy dropped.
pub fn publish(store: &Store, staged: Staged) -> Result<String> {
    let hex = staged.diff_hex.clone();
    let dest = store.layer_dir(&hex);
    let info_path = info_path(store, &hex);
    if dest.is_dir() && info_path.is_file() {
        return Ok(hex);
    }
    let size = tree_size(&staged.tree());
    if dest.exists() {
        // A half-published layer from a crash: replace it.
        remove_tree(&dest)?;
    }
    std::fs::rename(staged.tree(), &dest)
        .ctx(|| format!("cannot move the layer into {}", dest.display()))?;
    write_json(
        &info_path,
        &LayerInfo {
            diff_id: format!("sha256:{hex}"),
            size,
            created: now_secs(),
        },
    )?;
    Ok(hex)
}

fn info_path(store: &Store, hex: &str) -> PathBuf {
    store.layers_dir().join(format!("{hex}.json"))
}

/// Metadata of a stored layer.
pub fn info(store: &Store, hex: &str) -> Result<LayerInfo> {
    read_json(&info_path(store, hex))
}

/// Check that every layer of a list is present.
pub fn check_present(store: &Store, hexes: &[String]) -> Result<()> {
    for h in hexes {
        if !store.layer_dir(h).is_dir() {
            return Err(err!(
                "layer sha256:{h} is missing from the store {}: re-import the image",
                store.root.display()
            ));
        }
    }
    Ok(())
}

/// Apparent size of the files in a tree, each inode counted once.
pub fn tree_size(root: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if seen.insert((m.dev(), m.ino())) {
                total += m.size();
            }
        }
    }
    total
}

/// Remove layers that no image and no container references (hold the exclusive lock).
pub fn gc(store: &Store, referenced: &HashSet<String>) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let dir = store.layers_dir();
    for e in std::fs::read_dir(&dir)
        .ctx(|| format!("cannot list {}", dir.display()))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let hex = name.strip_suffix(".json").unwrap_or(&name).to_string();
        if hex.len() != 64 || referenced.contains(&hex) {
            continue;
        }
        if name.ends_with(".json") {
            // The tree goes first so a crash never leaves a tree without its metadata listed as whole.
            remove_tree(&store.layer_dir(&hex))?;
            std::fs::remove_file(e.path())
                .ctx(|| format!("cannot remove {}", e.path().display()))?;
            removed.push(hex);
        } else if !info_path(store, &hex).exists() {
            remove_tree(&e.path())?;
        }
    }
    Ok(removed)
}
