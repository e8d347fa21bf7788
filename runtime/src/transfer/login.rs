//! `strata login` / `logout`: check credentials against a registry and keep them in
//! docker's config.json (`auths.REGISTRY.auth` = base64 of `user:password`), where pulls and
//! pushes find them ([`super::auth::from_config`]).

use std::path::PathBuf;

use base64::Engine;

use super::auth::Creds;
use super::reference::{RemoteRef, DOCKER_HUB};
use super::registry::{Body, Client, Options};
use crate::err;
use crate::util::{write_atomic, Ctx, Result};

/// docker's config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn config_path() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Ok(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".docker/config.json"))
        .ok_or_else(|| {
            err!("neither DOCKER_CONFIG nor HOME is set: cannot find docker's config.json")
        })
}

/// The key docker files a registry's credentials under.
fn key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        "https://index.docker.io/v1/".into()
    } else {
        registry.to_string()
    }
}

fn read_config(path: &std::path::Path) -> Result<serde_json::Value> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            err!(
                "{} is not valid JSON ({e}): fix or remove it",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(e) => Err(err!("cannot read {}: {e}", path.display())),
    }
}

fn write_config(path: &std::path::Path, v: &serde_json::Value) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).ctx(|| format!("cannot create {}", d.display()))?;
    }
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| err!("cannot encode {}: {e}", path.display()))?;
    write_atomic(path, text.as_bytes())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .ctx(|| format!("cannot restrict {}", path.display()))
}

/// Check `creds` against `registry` (GET /v2/, answering its challenge), then store them;
/// the config file written. Nothing is stored when the registry refuses them.
pub fn login(registry: &str, creds: Creds, o: &Options) -> Result<PathBuf> {
    let r = RemoteRef::parse(&format!("{registry}/strata-login-check"))?;
    let mut opts = o.clone();
    opts.creds = Some(creds.clone());
    let mut c = Client::new(&r, &opts, false);
    let url = c.resolve("/v2/");
    let a = c.send("GET", &url, &[], Body::Empty)?;
    if a.status == 401 || a.status == 403 {
        return Err(err!(
            "{registry} refused the credentials (HTTP {})",
            a.status
        ));
    }
    if !(200..300).contains(&a.status) {
        return Err(err!(
            "{registry} answered HTTP {} to /v2/: is it a registry?",
            a.status
        ));
    }
    let path = config_path()?;
    let mut cfg = read_config(&path)?;
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.user, creds.pass));
    let obj = cfg
        .as_object_mut()
        .ok_or_else(|| err!("{} is not a JSON object: fix or remove it", path.display()))?;
    let auths = obj.entry("auths").or_insert_with(|| serde_json::json!({}));
    let auths = auths
        .as_object_mut()
        .ok_or_else(|| err!("{}: auths is not an object", path.display()))?;
    auths.insert(key(&r.registry), serde_json::json!({ "auth": auth }));
    write_config(&path, &cfg)?;
    Ok(path)
}

/// Forget the credentials of `registry`; whether there were any.
pub fn logout(registry: &str) -> Result<bool> {
    let r = RemoteRef::parse(&format!("{registry}/strata-login-check"))?;
    let path = config_path()?;
    let mut cfg = read_config(&path)?;
    let keys = [
        key(&r.registry),
        format!("https://{}", r.registry),
        format!("http://{}", r.registry),
    ];
    let removed = cfg
        .get_mut("auths")
        .and_then(|a| a.as_object_mut())
        .map(|a| {
            keys.iter()
                .filter(|k| a.remove(k.as_str()).is_some())
                .count()
                > 0
        })
        .unwrap_or(false);
    if removed {
        write_config(&path, &cfg)?;
    }
    Ok(removed)
}
