//! Named volumes, docker's `local` driver: a directory `store/volumes/NAME/_data` bound into
//! the containers that name it, outliving them. Anonymous volumes (`-v /data`, an image's
//! VOLUME) are the same with a random 64-hex name, removed with their container.

pub mod copy;
pub mod mounts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::err;
use crate::spec;
use crate::store::Store;
use crate::util::{now_secs, read_json, rfc3339, write_json, Ctx, Result};

/// What strata keeps beside a volume's data (store/volumes/NAME/volume.json).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    /// Seconds since the epoch.
    created: i64,
    /// `volume create --label K=V`.
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Made for one container (`-v /data`, an image VOLUME), not by name.
    #[serde(default)]
    anonymous: bool,
}

/// `volume inspect`'s answer, in docker's JSON shape.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeInfo {
    /// The volume's name.
    pub name: String,
    /// Always "local".
    pub driver: String,
    /// Where its data is on the host.
    pub mountpoint: PathBuf,
    /// RFC 3339.
    pub created_at: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Always "local".
    pub scope: String,
    /// Driver options (none for local).
    pub options: BTreeMap<String, String>,
    /// Whether it was made for one container and goes with it.
    #[serde(skip)]
    pub anonymous: bool,
}

/// store/volumes.
pub fn volumes_dir(store: &Store) -> PathBuf {
    store.root.join("volumes")
}

/// The data directory of volume `name` (bound into containers).
pub fn data_dir(store: &Store, name: &str) -> PathBuf {
    volumes_dir(store).join(name).join("_data")
}

/// Refuse names docker refuses (and so any `..`, `/` or leading dot).
pub fn check_name(name: &str) -> Result<()> {
    let mut b = name.bytes();
    let first_ok = b.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = b.all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(err!(
            "invalid volume name {name:?}: use letters, digits and _ . - (starting with a letter or digit)"
        ))
    }
}

fn info(store: &Store, name: &str) -> Result<VolumeInfo> {
    let dir = volumes_dir(store).join(name);
    let meta: Meta = read_json(&dir.join("volume.json"))
        .map_err(|_| err!("no such volume: {name} (see `strata volume ls`)"))?;
    Ok(VolumeInfo {
        name: name.to_string(),
        driver: "local".into(),
        mountpoint: dir.join("_data"),
        created_at: rfc3339(meta.created),
        labels: meta.labels,
        scope: "local".into(),
        options: BTreeMap::new(),
        anonymous: meta.anonymous,
    })
}

/// Create volume `name` (a random one when None); an existing one is returned as it is.
pub fn create(
    store: &Store,
    name: Option<&str>,
    labels: BTreeMap<String, String>,
    anonymous: bool,
) -> Result<VolumeInfo> {
    let name = match name {
        Some(n) => n.to_string(),
        None => crate::util::random_id()?,
    };
    check_name(&name)?;
    let dir = volumes_dir(store).join(&name);
    if dir.join("volume.json").is_file() {
        return info(store, &name);
    }
    let data = dir.join("_data");
    std::fs::create_dir_all(&data).ctx(|| format!("cannot create {}", data.display()))?;
    // volume.json last: a directory without it is not a volume yet.
    let meta = Meta {
        created: now_secs(),
        labels,
        anonymous,
    };
    write_json(&dir.join("volume.json"), &meta)?;
    info(store, &name)
}

/// Every volume, sorted by name.
pub fn list(store: &Store) -> Result<Vec<VolumeInfo>> {
    let dir = volumes_dir(store);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err!("cannot list {}: {e}", dir.display())),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| check_name(n).is_ok())
        .collect();
    names.sort();
    Ok(names.iter().filter_map(|n| info(store, n).ok()).collect())
}

/// `volume inspect NAME`.
pub fn inspect(store: &Store, name: &str) -> Result<VolumeInfo> {
    check_name(name)?;
    info(store, name)
}

/// The names of the containers (any state) that mount volume `name`.
pub fn users(store: &Store, name: &str) -> Result<Vec<String>> {
    Ok(spec::list_readable(store)?
        .into_iter()
        .filter(|c| c.volumes.iter().any(|v| v.volume.as_deref() == Some(name)))
        .map(|c| c.name)
        .collect())
}

/// `volume rm`: refused while a container uses it; with `force` a missing one is no error.
pub fn remove(store: &Store, name: &str, force: bool) -> Result<()> {
    check_name(name)?;
    let dir = volumes_dir(store).join(name);
    if !dir.join("volume.json").is_file() {
        return if force {
            Ok(())
        } else {
            Err(err!("no such volume: {name} (see `strata volume ls`)"))
        };
    }
    let used = users(store, name)?;
    if !used.is_empty() {
        return Err(err!(
            "volume {name} is in use by container {}: remove the container first (strata rm)",
            used.join(", ")
        ));
    }
    // volume.json first: a half-removed directory is no longer listed.
    let _ = std::fs::remove_file(dir.join("volume.json"));
    crate::store::remove_tree(&dir)
}

/// `volume prune`: remove the volumes no container uses (only anonymous ones unless `all`,
/// as docker 23 does); the names removed.
pub fn prune(store: &Store, all: bool) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for v in list(store)? {
        if (all || v.anonymous) && users(store, &v.name)?.is_empty() {
            remove(store, &v.name, true)?;
            removed.push(v.name);
        }
    }
    Ok(removed)
}

/// Remove the anonymous volumes of a container being removed (`rm -v`, `--rm`).
pub fn remove_anonymous(store: &Store, volumes: &[spec::Volume]) {
    for v in volumes.iter().filter(|v| v.anonymous) {
        if let Some(n) = &v.volume {
            if let Err(e) = remove(store, n, true) {
                tracing::warn!("cannot remove the anonymous volume {n}: {e}");
            }
        }
    }
}

/// Whether `dir` has no entries (a volume not yet filled).
pub fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}
