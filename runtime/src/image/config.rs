//! Images: OCI image configs stored by id (sha256 of the config JSON), and the
//! repositories file mapping `name:tag` to image ids.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::err;
use crate::store::Store;
use crate::util::{read_json, sha256_hex, write_atomic, write_json, Ctx, Result};

/// The OCI image configuration (the subset strata reads and writes; unknown fields are kept).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Creation time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// CPU architecture (amd64, ...).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (linux).
    #[serde(default)]
    pub os: String,
    /// How to run a container from this image.
    #[serde(default)]
    pub config: ExecConfig,
    /// The layers, bottom first.
    pub rootfs: RootFs,
    /// One entry per build step, bottom first.
    #[serde(default)]
    pub history: Vec<History>,
    /// Fields strata does not interpret, preserved.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The `config` member of an image config.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ExecConfig {
    /// USER[:GROUP], numeric or names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// KEY=VALUE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Entrypoint argv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Exposed ports ("80/tcp": {}).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// Volumes ("/data": {}).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// Signal that stops the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// HEALTHCHECK: docker's object (Test, Interval, Timeout, StartPeriod, StartInterval,
    /// Retries; durations in nanoseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
    /// ONBUILD triggers, run when the image is a build's base.
    #[serde(default, rename = "OnBuild", skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// SHELL, as docker records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

/// The layer list of an image config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootFs {
    /// Always "layers".
    #[serde(rename = "type")]
    pub kind: String,
    /// "sha256:<hex>" of each uncompressed layer tar, bottom first.
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// One history entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The command that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
}

impl ImageConfig {
    /// The layer diff_id hexes, bottom first.
    pub fn layer_hexes(&self) -> Vec<String> {
        self.rootfs
            .diff_ids
            .iter()
            .map(|d| d.strip_prefix("sha256:").unwrap_or(d).to_string())
            .collect()
    }
}

/// A parsed `name[:tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Repository name.
    pub name: String,
    /// Tag (default "latest").
    pub tag: String,
}

impl Reference {
    /// Parse and validate `NAME[:TAG]`.
    pub fn parse(s: &str) -> Result<Reference> {
        let (name, tag) = match s.rfind(':') {
            Some(i) if !s[i + 1..].contains('/') => (&s[..i], &s[i + 1..]),
            _ => (s, "latest"),
        };
        let name_ok = !name.is_empty()
            && name.len() <= 255
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:[]".contains(&b))
            && (name.as_bytes()[0].is_ascii_alphanumeric() || name.starts_with('['));
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && tag.as_bytes()[0] != b'.'
            && tag.as_bytes()[0] != b'-';
        if !name_ok {
            return Err(err!(
                "invalid image name {name:?}: use lowercase letters, digits and . _ - /"
            ));
        }
        if !tag_ok {
            return Err(err!("invalid tag {tag:?}: use letters, digits and . _ -"));
        }
        Ok(Reference {
            name: name.into(),
            tag: tag.into(),
        })
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

/// `name:tag` → "sha256:<hex>" image id.
pub type Repositories = BTreeMap<String, String>;

fn repos_path(store: &Store) -> PathBuf {
    store.images_dir().join("repositories.json")
}

/// Read the tag table (empty if none yet).
pub fn read_repositories(store: &Store) -> Result<Repositories> {
    let p = repos_path(store);
    if !p.exists() {
        return Ok(Repositories::new());
    }
    let data = std::fs::read(&p).ctx(|| format!("cannot read {}", p.display()))?;
    // Writing a new table over a damaged one would drop every tag silently: callers that
    // change tags stop here; the images themselves do not depend on it.
    serde_json::from_slice(&data).map_err(|e| {
        err!(
            "the tag table {} is corrupt ({e}): restore it, or remove it to drop every tag (images stay: `strata images` lists them by id, `strata tag ID NAME` names them again)",
            p.display()
        )
    })
}

/// The tag table for commands that only show tags: a damaged one is reported and read as
/// empty, so images can still be listed, inspected and saved by id.
pub fn read_repositories_or_warn(store: &Store) -> Repositories {
    read_repositories(store).unwrap_or_else(|e| {
        tracing::warn!("{e}");
        Repositories::new()
    })
}

/// Replace the tag table atomically (hold the exclusive store lock).
pub fn write_repositories(store: &Store, repos: &Repositories) -> Result<()> {
    write_json(&repos_path(store), repos)
}

fn image_path(store: &Store, hex: &str) -> PathBuf {
    store.images_dir().join(format!("{hex}.json"))
}

/// Store an image config; its id is the sha256 of the stored bytes ("sha256:<hex>").
pub fn save_image(store: &Store, cfg: &ImageConfig) -> Result<String> {
    let bytes = serde_json::to_vec(cfg).ctx(|| "cannot encode the image config")?;
    let hex = sha256_hex(&bytes);
    let p = image_path(store, &hex);
    if !p.exists() {
        write_atomic(&p, &bytes)?;
    }
    Ok(format!("sha256:{hex}"))
}

/// Load an image config by id ("sha256:<hex>" or hex).
pub fn load_image(store: &Store, id: &str) -> Result<ImageConfig> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    read_json(&image_path(store, hex))
}

/// All stored image ids ("sha256:<hex>").
pub fn list_image_ids(store: &Store) -> Result<Vec<String>> {
    let dir = store.images_dir();
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).ctx(|| format!("cannot list {}", dir.display()))? {
        let e = e.ctx(|| format!("cannot list {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(hex) = name.strip_suffix(".json") {
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push(format!("sha256:{hex}"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Remove an image config file (the caller handles tags and layers).
pub fn delete_image(store: &Store, id: &str) -> Result<()> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    let p = image_path(store, hex);
    std::fs::remove_file(&p).ctx(|| format!("cannot remove {}", p.display()))
}

/// Resolve `NAME[:TAG]`, a full id or a unique id prefix to an image id.
pub fn resolve(store: &Store, what: &str) -> Result<String> {
    // A damaged tag table still lets images be named by id.
    let repos = read_repositories(store);
    if let (Ok(repos), Ok(r)) = (&repos, Reference::parse(what)) {
        if let Some(id) = repos.get(&r.to_string()) {
            return Ok(id.clone());
        }
        if let Some(id) = resolve_short(repos, &r)? {
            return Ok(id);
        }
    }
    let hex = what.strip_prefix("sha256:").unwrap_or(what);
    if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let ids: Vec<String> = list_image_ids(store)?
            .into_iter()
            .filter(|id| id["sha256:".len()..].starts_with(hex))
            .collect();
        match ids.len() {
            1 => return ids.into_iter().next().ok_or_else(|| err!("no such image")),
            0 => {}
            _ => {
                return Err(err!(
                    "image id prefix {what} is ambiguous: give more digits"
                ))
            }
        }
    }
    // It may be a tag in the table that cannot be read.
    repos?;
    Err(err!(
        "no such image: {what} (see `strata images`, or `strata import` one)"
    ))
}

/// The full names a short name (no registry: `app:1`, `library/app`) stands for, as podman
/// qualifies them: `localhost/` (what podman tags local builds and archives with), then the
/// default registry, docker.io (`library/` for a one-component name).
pub fn qualified_names(r: &Reference) -> Vec<String> {
    let first = r.name.split('/').next().unwrap_or("");
    if r.name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost")
    {
        return Vec::new();
    }
    let hub = if r.name.contains('/') {
        format!("docker.io/{}", r.name)
    } else {
        format!("docker.io/library/{}", r.name)
    };
    vec![
        format!("localhost/{}:{}", r.name, r.tag),
        format!("{hub}:{}", r.tag),
    ]
}

/// The tag a short name stands for, if exactly one of its qualified forms is in the table
/// (or all those that are name one image); an error when they name different images.
fn resolve_short(repos: &Repositories, r: &Reference) -> Result<Option<String>> {
    let found: Vec<(String, &String)> = qualified_names(r)
        .into_iter()
        .filter_map(|n| repos.get(&n).map(|id| (n, id)))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [(_, id), rest @ ..] if rest.iter().all(|(_, other)| other == id) => {
            Ok(Some((*id).clone()))
        }
        _ => Err(err!(
            "image name {r} is ambiguous: it may be {}; give the full name",
            found
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        )),
    }
}

/// The tag `what` names in the table: itself, or the one qualified form of a short name
/// that is there (see [`qualified_names`]).
pub fn resolve_tag(repos: &Repositories, what: &str) -> Option<String> {
    let r = Reference::parse(what).ok()?;
    if repos.contains_key(&r.to_string()) {
        return Some(r.to_string());
    }
    let names: Vec<String> = qualified_names(&r)
        .into_iter()
        .filter(|n| repos.contains_key(n))
        .collect();
    match names.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// The tags that point at `id`.
pub fn tags_of(repos: &Repositories, id: &str) -> Vec<String> {
    repos
        .iter()
        .filter(|(_, v)| v.as_str() == id)
        .map(|(k, _)| k.clone())
        .collect()
}

/// Short (12 hex digit) form of an id.
pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        let r = Reference::parse("busybox").ok();
        assert_eq!(r.map(|r| r.to_string()), Some("busybox:latest".into()));
        let r = Reference::parse("localhost:5000/a/b:v1").ok();
        assert_eq!(
            r.map(|r| (r.name, r.tag)),
            Some(("localhost:5000/a/b".into(), "v1".into()))
        );
        assert!(Reference::parse("Upper").is_err());
        assert!(Reference::parse("a:b c").is_err());
    }
}
