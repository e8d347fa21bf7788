//! Remote image references: `[host[:port]/]path[:tag][@sha256:...]`, with docker's defaults
//! for short names (`busybox` is `docker.io/library/busybox:latest`).

use crate::err;
use crate::util::Result;

use super::media::digest_hex;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed remote reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRef {
    /// `host[:port]` as written (docker.io for Docker Hub).
    pub registry: String,
    /// Repository path (`library/busybox`, `team/app`).
    pub repository: String,
    /// Tag (`latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    /// `sha256:<hex>` when pinned.
    pub digest: Option<String>,
}

fn valid_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && c.as_bytes()[0].is_ascii_alphanumeric()
        && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
}

/// `host[:port]` or `[ipv6]:port`: what may stand before the first `/` as a registry. Host
/// names are case-insensitive and kept lowercase, so the local tag a pull makes is valid.
fn valid_registry(r: &str) -> bool {
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p))
                if !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b)) =>
            {
                (None, p)
            }
            _ => return false,
        }
    } else {
        match r.split_once(':') {
            Some((h, _)) => (Some(h), &r[h.len()..]),
            None => (Some(r), ""),
        }
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
        });
    let host_ok = match host {
        None => true,
        Some(h) => {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-".contains(&b))
                && h.as_bytes()[0].is_ascii_alphanumeric()
                && h.as_bytes()[h.len() - 1].is_ascii_alphanumeric()
        }
    };
    port_ok && host_ok
}

impl RemoteRef {
    /// Parse a reference the way docker does.
    pub fn parse(s: &str) -> Result<RemoteRef> {
        let bad = |why: &str| err!("invalid image reference {s:?}: {why}");
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                digest_hex(d).map_err(|e| bad(&e.to_string()))?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && t.as_bytes()[0] != b'.'
                && t.as_bytes()[0] != b'-';
            if !ok {
                return Err(bad("the tag may hold letters, digits and . _ -"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                let first = first.to_ascii_lowercase();
                if !valid_registry(&first) {
                    return Err(bad("the registry is host[:port] or [ipv6]:port"));
                }
                (first, path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if registry.len() + 1 + repository.len() > 255 {
            return Err(bad("longer than 255 characters with its registry"));
        }
        if !repository.split('/').all(valid_component) {
            return Err(bad(
                "repository names are lowercase letters, digits and . _ - separated by /",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(RemoteRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host the API is served on (Docker Hub's differs from its name).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// Whether the registry is on this machine (plain http is used for it).
    pub fn is_local(&self) -> bool {
        let host = if let Some(rest) = self.registry.strip_prefix('[') {
            rest.split(']').next().unwrap_or("")
        } else {
            self.registry.split(':').next().unwrap_or("")
        };
        host == "localhost" || host == "::1" || host.starts_with("127.")
    }

    /// The manifest to ask for: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// `registry/repository`: where blobs live, to remember for cross-repository mounts.
    pub fn location(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name to tag the image with in the local store: docker's familiar form
    /// (`busybox`, `user/app`, `127.0.0.1:5000/team/app`).
    pub fn local_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.location()
        }
    }
}

impl std::fmt::Display for RemoteRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.location())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = RemoteRef::parse(s).unwrap_or_else(|e| RemoteRef {
            registry: e.to_string(),
            repository: String::new(),
            tag: None,
            digest: None,
        });
        (r.registry, r.repository, r.tag, r.digest)
    }

    #[test]
    fn docker_defaults() {
        let l = Some("latest".to_string());
        assert_eq!(
            p("busybox"),
            (
                "docker.io".into(),
                "library/busybox".into(),
                l.clone(),
                None
            )
        );
        assert_eq!(
            p("user/app:v1"),
            (
                "docker.io".into(),
                "user/app".into(),
                Some("v1".into()),
                None
            )
        );
        assert_eq!(
            p("127.0.0.1:5000/team/app:1.2"),
            (
                "127.0.0.1:5000".into(),
                "team/app".into(),
                Some("1.2".into()),
                None
            )
        );
        assert_eq!(
            p("localhost/app"),
            ("localhost".into(), "app".into(), l, None)
        );
        let d = format!("sha256:{}", "0".repeat(64));
        assert_eq!(
            p(&format!("registry.example.com/library/busybox@{d}")),
            (
                "registry.example.com".into(),
                "library/busybox".into(),
                None,
                Some(d.clone())
            )
        );
        assert!(RemoteRef::parse("UPPER/app").is_err());
        assert!(RemoteRef::parse("app@sha256:nothex").is_err());
        assert!(RemoteRef::parse("localhost:5000/a/../b").is_err());
        let r = RemoteRef::parse("127.0.0.1:5000/x:1").ok();
        assert_eq!(r.as_ref().map(|r| r.is_local()), Some(true));
        assert_eq!(
            r.map(|r| r.local_name()),
            Some("127.0.0.1:5000/x".to_string())
        );
    }
}
