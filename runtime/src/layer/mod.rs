//! Layers: extracted once under layers/<diff_id hex>/ and shared by every image that lists them.

pub mod compression;
pub mod extract;
pub mod lazy;
pub mod native;
pub mod plain;
pub mod sparse;
pub mod toc;
pub mod treecopy;
pub mod upper_diff;
pub mod write;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::err;
use crate::store::{remove_tree, Store};
use crate::util::{now_secs, write_json, Ctx, Result};

/// Metadata kept beside each extracted layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerInfo {
    /// "sha256:<hex>" of the uncompressed tar; for a native layer its local id (the name of
    /// its directory), see [`Native`].
    pub diff_id: String,
    /// Apparent size of the extracted files, bytes.
    pub size: u64,
    /// Seconds since the epoch when first stored.
    pub created: i64,
    /// Set on a native layer: a fuse container's upper kept as it is, strata's records
    /// (deltas, metadata-only copies, redirects) included (docs/commit.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<Native>,
}

/// What the store knows of a native layer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Native {
    /// The layers it was committed over, bottom first: its records are relative to them.
    pub below: Vec<String>,
    /// "sha256:<hex>" of its plain OCI tar, once computed (save, push, inspect, overlay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_diff_id: Option<String>,
    /// Size of that tar, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_size: Option<u64>,
}

/// A layer extracted into the staging area, not yet in the store.
pub struct Staged {
    dir: PathBuf,
    /// sha256 hex of the uncompressed tar.
    pub diff_hex: String,
}

impl Staged {
    pub(crate) fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }
    pub(crate) fn tar(&self) -> PathBuf {
        self.dir.join("layer.tar")
    }
}

/// Copies what is read through it into a file: the uncompressed layer tar, kept so that
/// save and push give back byte-identical layers (same diff_id).
struct Tee<R> {
    inner: R,
    /// Sparse, so a tar that is mostly zeros (a decompression bomb) costs no disk space.
    out: crate::layer::sparse::SparseWriter,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
    }
}

/// Extract a layer tar (plain, gzip or zstd) into the staging area, keeping the uncompressed
/// tar beside it (no store lock needed: the directory is private).
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
    let tar = std::fs::File::create(staged.tar())
        .ctx(|| format!("cannot create {}", staged.tar().display()))?;
    let mut tee = Tee {
        inner: crate::layer::compression::decompressed(reader)?,
        out: crate::layer::sparse::SparseWriter::new(tar),
    };
    let x = crate::layer::extract::extract_opts(&mut tee, &staged.tree(), allow_empty)?;
    tee.out
        .finish()
        .ctx(|| format!("cannot write {}", staged.tar().display()))?;
    staged.diff_hex = x.diff_hex;
    Ok(staged)
}

/// Move a staged layer into the store (hold the exclusive lock). A layer already present
/// (same diff_id) is kept and the staged copy dropped.
pub fn publish(store: &Store, staged: Staged) -> Result<String> {
    let hex = staged.diff_hex.clone();
    let dest = store.layer_dir(&hex);
    let info_path = info_path(store, &hex);
    let tar = tar_path(store, &hex);
    if !tar.is_file() {
        std::fs::rename(staged.tar(), &tar)
            .ctx(|| format!("cannot move the layer tar into {}", tar.display()))?;
    }
    if dest.is_dir() && info_path.is_file() {
        mend_info(store, &hex)?;
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
            native: None,
        },
    )?;
    Ok(hex)
}

/// Where a layer's metadata is kept.
pub fn info_path(store: &Store, hex: &str) -> PathBuf {
    store.layers_dir().join(format!("{hex}.json"))
}

/// The uncompressed tar a layer was extracted from (its sha256 is the diff_id). Layers stored
/// by older versions may lack it.
pub fn tar_path(store: &Store, hex: &str) -> PathBuf {
    store.layers_dir().join(format!("{hex}.tar"))
}

/// Metadata of a stored layer.
pub fn info(store: &Store, hex: &str) -> Result<LayerInfo> {
    let p = info_path(store, hex);
    let data = std::fs::read(&p).ctx(|| format!("cannot read {}", p.display()))?;
    let corrupt = |why: String| {
        err!(
            "layer metadata {} is corrupt ({why}): sizes leave the layer out until an import, pull or load of an image with it rewrites the file",
            p.display()
        )
    };
    let i: LayerInfo = serde_json::from_slice(&data).map_err(|e| corrupt(e.to_string()))?;
    if i.diff_id != format!("sha256:{hex}") {
        return Err(corrupt(format!("it names {:?}", i.diff_id)));
    }
    Ok(i)
}

/// Rewrite the metadata of a whole layer when it is there but cannot be read (hold the
/// exclusive lock). The tree stays: containers may be using it. A missing file is left
/// alone: that is a half-published layer, which `publish` replaces.
pub fn mend_info(store: &Store, hex: &str) -> Result<()> {
    let dest = store.layer_dir(hex);
    if !dest.is_dir() || !info_path(store, hex).is_file() || info(store, hex).is_ok() {
        return Ok(());
    }
    write_json(
        &info_path(store, hex),
        &LayerInfo {
            diff_id: format!("sha256:{hex}"),
            size: tree_size(&dest),
            created: now_secs(),
            native: None,
        },
    )
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

/// Suffix of the directory holding a native layer's materialized plain copy.
pub const PLAIN_SUFFIX: &str = ".plain";

/// Remove layers that no image and no container references (hold the exclusive lock).
pub fn gc(store: &Store, referenced: &HashSet<String>) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let dir = store.layers_dir();
    for e in std::fs::read_dir(&dir)
        .ctx(|| format!("cannot list {}", dir.display()))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let hex = name
            .strip_suffix(".json")
            .or_else(|| name.strip_suffix(".tar"))
            .or_else(|| name.strip_suffix(PLAIN_SUFFIX))
            .unwrap_or(&name)
            .to_string();
        if hex.len() != 64 || referenced.contains(&hex) {
            continue;
        }
        if name.ends_with(PLAIN_SUFFIX) {
            // A native layer's materialized copy (or a half-made one): goes with its layer.
            remove_tree(&e.path())?;
        } else if name.ends_with(".tar") {
            if !info_path(store, &hex).exists() {
                match std::fs::remove_file(e.path()) {
                    Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                        return Err(err!("cannot remove {}: {err}", e.path().display()))
                    }
                    _ => {}
                }
            }
        } else if name.ends_with(".json") {
            // The tree goes first so a crash never leaves a tree without its metadata listed as whole.
            remove_tree(&store.layer_dir(&hex))?;
            lazy::forget(store, &hex)?;
            let tar = tar_path(store, &hex);
            if tar.exists() {
                std::fs::remove_file(&tar).ctx(|| format!("cannot remove {}", tar.display()))?;
            }
            std::fs::remove_file(e.path())
                .ctx(|| format!("cannot remove {}", e.path().display()))?;
            removed.push(hex);
        } else if !info_path(store, &hex).exists() {
            remove_tree(&e.path())?;
        }
    }
    Ok(removed)
}
