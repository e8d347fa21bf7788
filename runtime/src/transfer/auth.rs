//! Registry credentials and authentication challenges: `--creds user:pass`, docker's
//! `config.json` (and podman's `auth.json`), Basic and Bearer (token service) schemes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine;

use crate::err;
use crate::util::Result;

/// A user name and password (or token).
#[derive(Clone)]
pub struct Creds {
    /// User name.
    pub user: String,
    /// Password or token.
    pub pass: String,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Creds({}, ***)", self.user)
    }
}

impl Creds {
    /// Parse `user:pass`.
    pub fn parse(s: &str) -> Result<Creds> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Creds {
                user: u.into(),
                pass: p.into(),
            }),
            _ => Err(err!("--creds takes USER:PASSWORD")),
        }
    }

    /// The value of a Basic Authorization header.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.user, self.pass);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

fn auth_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        out.push(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        out.push(PathBuf::from(d).join("containers/auth.json"));
    }
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => out.push(PathBuf::from(d).join("config.json")),
        None => {
            if let Some(h) = std::env::var_os("HOME") {
                out.push(PathBuf::from(h).join(".docker/config.json"));
            }
        }
    }
    out
}

/// Credentials for `registry` from docker-style config files, if any.
pub fn from_config(registry: &str) -> Option<Creds> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        auth: Option<String>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    let keys: Vec<String> = if registry == super::reference::DOCKER_HUB {
        vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![
            registry.to_string(),
            format!("https://{registry}"),
            format!("http://{registry}"),
            format!("https://{registry}/v1/"),
        ]
    };
    for path in auth_files() {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(file) = serde_json::from_slice::<File>(&bytes) else {
            tracing::warn!("ignoring {}: not valid JSON", path.display());
            continue;
        };
        for k in &keys {
            let Some(e) = file.auths.get(k) else { continue };
            if let (Some(u), Some(p)) = (&e.username, &e.password) {
                return Some(Creds {
                    user: u.clone(),
                    pass: p.clone(),
                });
            }
            let decoded = e
                .auth
                .as_deref()
                .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
                .and_then(|b| String::from_utf8(b).ok());
            if let Some(c) = decoded.and_then(|d| Creds::parse(&d).ok()) {
                return Some(c);
            }
        }
    }
    None
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// "basic" or "bearer" (lowercased).
    pub scheme: String,
    /// Parameters (realm, service, scope, error...).
    pub params: BTreeMap<String, String>,
}

/// Parse `Scheme k="v", k2=v2` (quoted values may hold commas).
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = match h.find(' ') {
        Some(i) => (&h[..i], &h[i + 1..]),
        None => (h, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = rest[ks..i].trim().to_ascii_lowercase();
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        let mut val = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                val.push(b[i] as char);
                i += 1;
            }
            i += 1;
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val = rest[vs..i].trim().to_string();
        }
        if !key.is_empty() {
            params.insert(key, val);
        }
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// Percent-encode a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        );
        let c = c.unwrap_or(Challenge {
            scheme: String::new(),
            params: BTreeMap::new(),
        });
        assert_eq!(c.scheme, "bearer");
        assert_eq!(
            c.params.get("scope").map(String::as_str),
            Some("repository:a/b:pull,push")
        );
        assert_eq!(
            c.params.get("realm").map(String::as_str),
            Some("https://auth.example.com/token")
        );
        let b = parse_challenge(r#"Basic realm="strata""#).map(|c| c.scheme);
        assert_eq!(b.as_deref(), Some("basic"));
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
        assert!(Creds::parse("u:p:q")
            .map(|c| c.pass == "p:q")
            .unwrap_or(false));
        assert!(Creds::parse("nocolon").is_err());
    }
}
