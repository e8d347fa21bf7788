//! Image commands: import, list, tag, rmi, inspect, history, and layer garbage collection.

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;

use crate::err;
use crate::image::{self, History, ImageConfig, Reference};
use crate::layer;
use crate::spec;
use crate::store::Store;
use crate::util::{now_secs, rfc3339, Result};

/// The OCI architecture name of this machine.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Import a rootfs tar (plain or gzip) as a one-layer image tagged `name`; the image id.
pub fn import(
    store: &Store,
    reader: impl Read,
    name: &str,
    changes: &[String],
    source: &str,
) -> Result<String> {
    let reference = Reference::parse(name)?;
    let mut exec = image::ExecConfig::default();
    for c in changes {
        crate::image::changes::apply(&mut exec, c)?;
    }
    let staged = layer::stage(store, reader)?;
    let _lock = store.lock_exclusive()?;
    // Before anything is published: a tag table that cannot be written leaves no untagged
    // image behind.
    let mut repos = image::read_repositories(store)?;
    let hex = layer::publish(store, staged)?;
    let created = rfc3339(now_secs());
    let cfg = ImageConfig {
        created: Some(created.clone()),
        architecture: arch().into(),
        os: "linux".into(),
        config: exec,
        rootfs: image::RootFs {
            kind: "layers".into(),
            diff_ids: vec![format!("sha256:{hex}")],
        },
        history: vec![History {
            created: Some(created),
            created_by: Some(format!("strata import {source}")),
            comment: Some("imported from a tarball".into()),
            empty_layer: None,
        }],
        extra: Default::default(),
    };
    let id = image::save_image(store, &cfg)?;
    repos.insert(reference.to_string(), id.clone());
    image::write_repositories(store, &repos)?;
    Ok(id)
}

/// One row of `strata images`.
#[derive(Debug, Clone)]
pub struct ImageRow {
    /// name:tag, or None for an untagged image.
    pub reference: Option<Reference>,
    /// "sha256:<hex>".
    pub id: String,
    /// Seconds since the epoch.
    pub created: i64,
    /// Sum of the layers' sizes.
    pub size: u64,
}

/// Size of an image: the sum of its layers (a layer whose metadata is damaged is reported
/// and left out).
pub fn image_size(store: &Store, cfg: &ImageConfig) -> u64 {
    cfg.layer_hexes()
        .iter()
        .filter_map(|h| {
            layer::info(store, h)
                .map_err(|e| tracing::warn!("{e}"))
                .ok()
        })
        .map(|i| i.size)
        .sum()
}

/// Every image, once per tag (untagged images once).
pub fn list(store: &Store) -> Result<Vec<ImageRow>> {
    let _lock = store.lock_shared()?;
    let repos = image::read_repositories_or_warn(store);
    let mut rows = Vec::new();
    for id in image::list_image_ids(store)? {
        let cfg = match image::load_image(store, &id) {
            Ok(c) => c,
            Err(e) => {
                // One damaged image must not hide the others.
                tracing::warn!("skipping image {}: {e}", image::short_id(&id));
                continue;
            }
        };
        let created = cfg
            .created
            .as_deref()
            .and_then(crate::util::parse_rfc3339)
            .unwrap_or(0);
        let size = image_size(store, &cfg);
        let tags = image::tags_of(&repos, &id);
        if tags.is_empty() {
            rows.push(ImageRow {
                reference: None,
                id: id.clone(),
                created,
                size,
            });
        }
        for t in tags {
            rows.push(ImageRow {
                reference: Reference::parse(&t).ok(),
                id: id.clone(),
                created,
                size,
            });
        }
    }
    rows.sort_by(|a, b| {
        b.created.cmp(&a.created).then(
            a.reference
                .as_ref()
                .map(|r| r.to_string())
                .cmp(&b.reference.as_ref().map(|r| r.to_string())),
        )
    });
    Ok(rows)
}

/// Point `target` at the image `source` names.
pub fn tag(store: &Store, source: &str, target: &str) -> Result<()> {
    let reference = Reference::parse(target)?;
    let _lock = store.lock_exclusive()?;
    let id = image::resolve(store, source)?;
    let mut repos = image::read_repositories(store)?;
    repos.insert(reference.to_string(), id);
    image::write_repositories(store, &repos)
}

/// Remove layers no image or container uses (hold the exclusive lock). While any image or
/// container cannot be read nothing is removed: its layers are unknown.
pub fn gc_layers(store: &Store) -> Result<()> {
    let mut used = HashSet::new();
    let images: Result<Vec<_>> = image::list_image_ids(store)?
        .iter()
        .map(|id| image::load_image(store, id))
        .collect();
    let (images, containers) = match (images, spec::list(store)) {
        (Ok(i), Ok(c)) => (i, c),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("unused layers kept: {e}");
            return Ok(());
        }
    };
    for img in images {
        used.extend(img.layer_hexes());
    }
    for c in containers {
        used.extend(c.layers);
    }
    layer::gc(store, &used)?;
    Ok(())
}

/// Remove a tag, or an image with all its tags; what was done, one line per action.
pub fn rmi(store: &Store, what: &str, force: bool) -> Result<Vec<String>> {
    let _lock = store.lock_exclusive()?;
    let id = image::resolve(store, what)?;
    let mut repos = image::read_repositories(store)?;
    let tags = image::tags_of(&repos, &id);
    let mut out = Vec::new();
    let by_tag = image::resolve_tag(&repos, what);
    if let Some(t) = &by_tag {
        if tags.len() > 1 {
            repos.remove(t);
            image::write_repositories(store, &repos)?;
            return Ok(vec![format!("Untagged: {t}")]);
        }
    } else if tags.len() > 1 && !force {
        return Err(err!(
            "image {} is tagged in several repositories ({}): remove the tags one by one or use -f",
            image::short_id(&id),
            tags.join(", ")
        ));
    }
    let users: Vec<String> = spec::list_readable(store)?
        .into_iter()
        .filter(|c| c.image_id == id)
        .map(|c| c.name)
        .collect();
    if !users.is_empty() && !force {
        return Err(err!(
            "image {what} is used by container(s) {}: remove them first (strata rm) or use rmi -f",
            users.join(", ")
        ));
    }
    for t in &tags {
        repos.remove(t);
        out.push(format!("Untagged: {t}"));
    }
    image::write_repositories(store, &repos)?;
    image::delete_image(store, &id)?;
    out.push(format!("Deleted: {id}"));
    gc_layers(store)?;
    Ok(out)
}

/// One row of `strata history`.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    /// Image id for the top row, "<missing>" below (as docker prints).
    pub id: String,
    /// Seconds since the epoch.
    pub created: i64,
    /// created_by.
    pub created_by: String,
    /// Layer size (0 for empty layers).
    pub size: u64,
    /// comment.
    pub comment: String,
}

/// The history of an image, newest first.
pub fn history(store: &Store, what: &str) -> Result<Vec<HistoryRow>> {
    let _lock = store.lock_shared()?;
    let id = image::resolve(store, what)?;
    let cfg = image::load_image(store, &id)?;
    let hexes = cfg.layer_hexes();
    let mut layer_iter = hexes.iter();
    let mut rows = Vec::new();
    for h in &cfg.history {
        let size = if h.empty_layer.unwrap_or(false) {
            0
        } else {
            layer_iter
                .next()
                .and_then(|l| layer::info(store, l).ok())
                .map(|i| i.size)
                .unwrap_or(0)
        };
        rows.push(HistoryRow {
            id: "<missing>".into(),
            created: h
                .created
                .as_deref()
                .and_then(crate::util::parse_rfc3339)
                .unwrap_or(0),
            created_by: h.created_by.clone().unwrap_or_default(),
            size,
            comment: h.comment.clone().unwrap_or_default(),
        });
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = image::short_id(&id);
    }
    Ok(rows)
}

/// `strata inspect` of an image: id, tags, size and the config as JSON.
pub fn inspect(store: &Store, what: &str) -> Result<serde_json::Value> {
    let _lock = store.lock_shared()?;
    let id = image::resolve(store, what)?;
    let cfg = image::load_image(store, &id)?;
    let repos = image::read_repositories_or_warn(store);
    // RootFS shows the ids the image has outside the store: a native layer's plain diff_id
    // (computed now if it never was, then cached); GraphDriver shows how it is stored.
    let mut plain_ids = Vec::new();
    let mut layers = Vec::new();
    for h in cfg.layer_hexes() {
        let native = crate::layer::native::native_of(store, &h);
        let (plain, _) = crate::layer::plain::diff_of(store, &h)?;
        plain_ids.push(format!("sha256:{plain}"));
        layers.push(serde_json::json!({
            "LocalId": format!("sha256:{h}"),
            "DiffID": format!("sha256:{plain}"),
            "Native": native.is_some(),
            "Dir": store.layer_dir(&h),
            "OverlayDir": crate::layer::plain::branch_dir(store, &h, crate::driver::Driver::Overlay.name()),
            "Materialized": native.is_some() && crate::layer::plain::plain_dir(store, &h).is_dir(),
        }));
    }
    let native = crate::layer::native::any_native(store, &cfg.layer_hexes());
    Ok(serde_json::json!({
        "Id": id,
        "RepoTags": image::tags_of(&repos, &id),
        "Created": cfg.created,
        "Architecture": cfg.architecture,
        "Os": cfg.os,
        "Size": image_size(store, &cfg),
        "Config": cfg.config,
        "RootFS": { "Type": cfg.rootfs.kind, "Layers": plain_ids },
        "GraphDriver": {
            "Name": if native { "fuse" } else { "any" },
            "Reason": if native {
                "native layers (strata records kept): the fuse driver reads them as they are; --driver overlay mounts materialized plain copies"
            } else {
                "plain layers: every driver mounts them as they are"
            },
            "Data": { "Layers": layers },
        },
        "History": cfg.history,
    }))
}

/// `strata fsck --image`: check every native layer of an image (its records against the
/// layers below it, as `strata fsck UPPER --lowerdir` does); (layer hex, findings) per
/// native layer, bottom first.
pub fn fsck_image(
    store: &Store,
    what: &str,
) -> Result<Vec<(String, Vec<strata_fs::delta::fsck::Finding>)>> {
    let _lock = store.lock_shared()?;
    let id = image::resolve(store, what)?;
    let img = image::load_image(store, &id)?;
    let hexes = img.layer_hexes();
    layer::check_present(store, &hexes)?;
    let mut out = Vec::new();
    for (i, h) in hexes.iter().enumerate() {
        let Some(n) = crate::layer::native::native_of(store, h) else {
            continue;
        };
        if n.below.as_slice() != &hexes[..i] {
            return Err(err!(
                "native layer {h} was committed over other layers than the image lists below it: the image is corrupt"
            ));
        }
        let lowers: Vec<PathBuf> = n.below.iter().rev().map(|b| store.layer_dir(b)).collect();
        let findings = strata_fs::delta::fsck::fsck(&store.layer_dir(h), &lowers, false)
            .map_err(|e| err!("layer {h}: {e}"))?;
        out.push((h.clone(), findings));
    }
    Ok(out)
}
