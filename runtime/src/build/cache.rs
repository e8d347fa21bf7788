//! The build cache: `store/build-cache/KEY` holds the stage's image config after a step.
//! A key chains the previous step's key, the instruction, the build args in scope and, for
//! COPY/ADD, a digest of the sources' names, modes, owners and contents (not mtimes). An
//! entry is written atomically after the step's layer is published, and a hit whose layers
//! are gone (pruned) is a miss, so an entry never yields a half-written image.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::image::ImageConfig;
use crate::store::Store;
use crate::util::{sha256_hex, write_atomic, Ctx, Result};
use crate::{image, layer, spec};

fn dir(store: &Store) -> PathBuf {
    store.root.join("build-cache")
}

/// The key of a step after `prev`.
pub fn key(prev: &str, text: &str, args: &BTreeMap<String, String>, sources: &str) -> String {
    let mut s = format!("{prev}\n{text}\n");
    for (k, v) in args {
        s.push_str(&format!("{k}={v}\n"));
    }
    s.push_str(sources);
    sha256_hex(s.as_bytes())
}

/// The cached image config of `key`, when its layers are all present.
pub fn get(store: &Store, key: &str) -> Option<ImageConfig> {
    let data = std::fs::read(dir(store).join(key)).ok()?;
    let img: ImageConfig = serde_json::from_slice(&data).ok()?;
    layer::check_present(store, &img.layer_hexes()).ok()?;
    Some(img)
}

/// Record `img` as the result of `key`.
pub fn put(store: &Store, key: &str, img: &ImageConfig) -> Result<()> {
    let d = dir(store);
    std::fs::create_dir_all(&d).ctx(|| format!("cannot create {}", d.display()))?;
    let data =
        serde_json::to_vec(img).map_err(|e| crate::err!("cannot encode a cache entry: {e}"))?;
    write_atomic(&d.join(key), &data)
}

/// The layers cache entries name.
fn cached_layers(store: &Store) -> HashSet<String> {
    let mut used = HashSet::new();
    if let Ok(rd) = std::fs::read_dir(dir(store)) {
        for e in rd.flatten() {
            if let Ok(data) = std::fs::read(e.path()) {
                if let Ok(img) = serde_json::from_slice::<ImageConfig>(&data) {
                    used.extend(img.layer_hexes());
                }
            }
        }
    }
    used
}

/// Remove the layers no image, container or cache entry uses (after a failed build).
pub fn gc_unused(store: &Store) -> Result<()> {
    let mut used = cached_layers(store);
    for id in image::list_image_ids(store)? {
        used.extend(image::load_image(store, &id)?.layer_hexes());
    }
    for c in spec::list(store)? {
        used.extend(c.layers);
    }
    layer::gc(store, &used)?;
    Ok(())
}

/// `strata builder prune`: drop every cache entry, then the layers only they used; how
/// many entries were removed.
pub fn prune(store: &Store) -> Result<usize> {
    let d = dir(store);
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(&d) {
        for e in rd.flatten() {
            if std::fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
    }
    image::commands::gc_layers(store)?;
    Ok(n)
}

/// A digest of the files at `paths`: names, types, modes, owners, contents, link targets.
pub fn sources_digest(paths: &[PathBuf]) -> Result<String> {
    let mut s = String::new();
    for p in paths {
        walk(p, Path::new(""), &mut s)?;
    }
    Ok(sha256_hex(s.as_bytes()))
}

fn walk(p: &Path, rel: &Path, out: &mut String) -> Result<()> {
    let md = std::fs::symlink_metadata(p).ctx(|| format!("cannot read {}", p.display()))?;
    out.push_str(&format!(
        "{}\0{:o}\0{}:{}\0",
        rel.display(),
        md.mode(),
        md.uid(),
        md.gid()
    ));
    if md.file_type().is_symlink() {
        let t = std::fs::read_link(p).ctx(|| format!("cannot read {}", p.display()))?;
        out.push_str(&format!("-> {}\n", t.display()));
    } else if md.is_dir() {
        out.push('\n');
        let mut names: Vec<_> = std::fs::read_dir(p)
            .ctx(|| format!("cannot list {}", p.display()))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            walk(&p.join(&n), &rel.join(&n), out)?;
        }
    } else {
        let data = std::fs::read(p).ctx(|| format!("cannot read {}", p.display()))?;
        out.push_str(&sha256_hex(&data));
        out.push('\n');
    }
    Ok(())
}
