//! A client of the OCI distribution API over ureq: manifests, blob HEAD/GET, uploads
//! (POST then PUT, absolute or relative Location), cross-repository mounts, and Basic or
//! Bearer authentication answered on the first 401.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::err;
use crate::util::Result;

use super::auth::{self, Creds};
use super::media;
use super::progress::Bar;
use super::reference::RemoteRef;

/// Every manifest and index type strata reads.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Explicit credentials (else docker's config.json).
    pub creds: Option<Creds>,
    /// Plain http (always for localhost and 127.0.0.1).
    pub insecure: bool,
    /// No progress bars, no summary.
    pub quiet: bool,
}

/// A request body that can be sent again after an authentication round trip.
pub enum Body<'a> {
    /// No body.
    Empty,
    /// Bytes in memory.
    Bytes(&'a [u8], &'a str),
    /// A file, re-opened for every attempt, moving a progress bar.
    File(&'a Path, &'a Bar),
}

/// An HTTP answer: status and the response (for headers and the body).
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The response.
    pub resp: ureq::Response,
}

impl Answer {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.resp.header(name).map(str::to_string)
    }
    /// The body as text, bounded.
    pub fn text(self) -> String {
        let mut s = String::new();
        let _ = self
            .resp
            .into_reader()
            .take(64 * 1024)
            .read_to_string(&mut s);
        s
    }
}

/// One registry repository's client.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// The reference this client was made for.
    pub reference: RemoteRef,
    creds: Option<Creds>,
    auth: Option<String>,
    /// Scopes to ask a token service for (`repository:NAME:pull,push`).
    scopes: Vec<String>,
}

fn status_error(what: &str, status: u16, body: &str) -> crate::util::Error {
    let detail = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("errors")?
                .as_array()?
                .first()
                .and_then(|e| e.get("message"))
                .and_then(|m| m.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| {
            body.lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect()
        });
    err!("{what}: the registry answered HTTP {status} {detail}")
}

impl Client {
    /// A client for the repository `r` names, asking for `push` rights when pushing.
    pub fn new(r: &RemoteRef, o: &Options, push: bool) -> Client {
        let scheme = if o.insecure || r.is_local() {
            "http"
        } else {
            "https"
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(300))
            .timeout_write(Duration::from_secs(300))
            .redirects(5)
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .build();
        let creds = o.creds.clone().or_else(|| auth::from_config(&r.registry));
        let action = if push { "pull,push" } else { "pull" };
        Client {
            agent,
            base: format!("{scheme}://{}", r.api_host()),
            reference: r.clone(),
            creds,
            auth: None,
            scopes: vec![format!("repository:{}:{action}", r.repository)],
        }
    }

    /// Also ask for pull rights on another repository (the source of a blob mount).
    pub fn add_pull_scope(&mut self, repository: &str) {
        let s = format!("repository:{repository}:pull");
        if !self.scopes.contains(&s) {
            self.scopes.push(s);
            // A new token is fetched at the next 401.
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.reference.repository)
    }

    /// Resolve a Location header (absolute, or relative to the registry).
    pub fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            format!(
                "{}/v2/{}/blobs/uploads/{location}",
                self.base, self.reference.repository
            )
        }
    }

    fn send_once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
    ) -> Result<Answer> {
        let mut req = self.agent.request(method, url);
        if let Some(a) = &self.auth {
            req = req.set("Authorization", a);
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let res = match body {
            Body::Empty => {
                if method == "POST" || method == "PUT" {
                    req.set("Content-Length", "0").send_bytes(&[])
                } else {
                    req.call()
                }
            }
            Body::Bytes(b, ct) => req.set("Content-Type", ct).send_bytes(b),
            Body::File(p, bar) => {
                let f =
                    std::fs::File::open(p).map_err(|e| err!("cannot open {}: {e}", p.display()))?;
                let len = f
                    .metadata()
                    .map_err(|e| err!("cannot stat {}: {e}", p.display()))?
                    .len();
                bar.reset();
                req.set("Content-Type", "application/octet-stream")
                    .set("Content-Length", &len.to_string())
                    .send(bar.reader(std::io::BufReader::with_capacity(1 << 16, f)))
            }
        };
        match res {
            Ok(resp) => Ok(Answer {
                status: resp.status(),
                resp,
            }),
            Err(ureq::Error::Status(status, resp)) => Ok(Answer { status, resp }),
            Err(ureq::Error::Transport(t)) => {
                let hint = if !self.base.starts_with("http://")
                    && t.kind() == ureq::ErrorKind::ConnectionFailed
                {
                    " (a registry without TLS needs --insecure)"
                } else {
                    ""
                };
                Err(err!("cannot reach {}: {t}{hint}", self.reference.registry))
            }
        }
    }

    /// Send a request, authenticating and retrying once on a 401.
    pub fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Answer> {
        let a = self.send_once(method, url, headers, &body)?;
        if a.status != 401 {
            return Ok(a);
        }
        let challenge = a
            .header("WWW-Authenticate")
            .and_then(|h| auth::parse_challenge(&h));
        drop(a);
        let Some(c) = challenge else {
            return Err(err!(
                "{} refused the request (HTTP 401) without saying how to authenticate",
                self.reference.registry
            ));
        };
        self.authenticate(&c)?;
        let a = self.send_once(method, url, headers, &body)?;
        if a.status == 401 || a.status == 403 {
            return Err(err!(
                "{} refused the credentials for {} (HTTP {}): check --creds or docker's config.json",
                self.reference.registry,
                self.reference.repository,
                a.status
            ));
        }
        Ok(a)
    }

    fn need_creds(&self) -> crate::util::Error {
        err!(
            "{} needs credentials: pass --creds USER:PASSWORD or add them to ~/.docker/config.json",
            self.reference.registry
        )
    }

    fn authenticate(&mut self, c: &auth::Challenge) -> Result<()> {
        match c.scheme.as_str() {
            "basic" => {
                let creds = self.creds.as_ref().ok_or_else(|| self.need_creds())?;
                self.auth = Some(creds.basic());
                Ok(())
            }
            "bearer" => {
                let realm = c
                    .params
                    .get("realm")
                    .ok_or_else(|| err!("the registry's Bearer challenge has no realm"))?;
                let mut url = realm.clone();
                let mut sep = if url.contains('?') { '&' } else { '?' };
                if let Some(s) = c.params.get("service") {
                    url.push_str(&format!("{sep}service={}", auth::encode(s)));
                    sep = '&';
                }
                let mut scopes = self.scopes.clone();
                if let Some(s) = c.params.get("scope") {
                    if !scopes.contains(s) {
                        scopes.push(s.clone());
                    }
                }
                for s in scopes {
                    url.push_str(&format!("{sep}scope={}", auth::encode(&s)));
                    sep = '&';
                }
                let mut req = self.agent.get(&url);
                if let Some(cr) = &self.creds {
                    req = req.set("Authorization", &cr.basic());
                }
                let resp = match req.call() {
                    Ok(r) => r,
                    Err(ureq::Error::Status(401 | 403, _)) => {
                        return Err(if self.creds.is_some() {
                            err!(
                                "the token service {realm} refused the credentials: check --creds or docker's config.json"
                            )
                        } else {
                            self.need_creds()
                        })
                    }
                    Err(ureq::Error::Status(s, r)) => {
                        let body = Answer { status: s, resp: r }.text();
                        return Err(status_error("token request", s, &body));
                    }
                    Err(ureq::Error::Transport(t)) => {
                        return Err(err!("cannot reach the token service {realm}: {t}"))
                    }
                };
                #[derive(serde::Deserialize)]
                struct Token {
                    #[serde(default)]
                    token: Option<String>,
                    #[serde(default)]
                    access_token: Option<String>,
                }
                let mut body = String::new();
                resp.into_reader()
                    .take(1 << 20)
                    .read_to_string(&mut body)
                    .map_err(|e| err!("cannot read the token: {e}"))?;
                let t: Token = serde_json::from_str(&body).map_err(|e| {
                    err!("the token service answered something else than a token: {e}")
                })?;
                let tok = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| err!("the token service answered no token"))?;
                self.auth = Some(format!("Bearer {tok}"));
                Ok(())
            }
            other => Err(err!(
                "{} asks for {other} authentication, which strata does not speak",
                self.reference.registry
            )),
        }
    }

    /// Fetch a manifest or index by tag or digest: bytes and media type. A digest is checked.
    pub fn manifest(&mut self, reference: &str) -> Result<(Vec<u8>, String)> {
        let url = self.url(&format!("manifests/{reference}"));
        let a = self.send("GET", &url, &[("Accept", MANIFEST_ACCEPT)], Body::Empty)?;
        let what = format!("manifest {}@{reference}", self.reference.location());
        if a.status == 404 {
            return Err(err!(
                "{}:{reference} not found in the registry: check the name and tag",
                self.reference.location()
            ));
        }
        if a.status != 200 {
            let s = a.status;
            return Err(status_error(&what, s, &a.text()));
        }
        let ct = a
            .header("Content-Type")
            .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let mut bytes = Vec::new();
        a.resp
            .into_reader()
            .take(super::ingest::MAX_JSON + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| err!("cannot read {what}: {e}"))?;
        if bytes.len() as u64 > super::ingest::MAX_JSON {
            return Err(err!("{what} is too large: refusing it"));
        }
        if reference.starts_with("sha256:") {
            let got = format!("sha256:{}", crate::util::sha256_hex(&bytes));
            if got != reference {
                return Err(err!(
                    "{what}: the registry sent content with digest {got}: refusing it"
                ));
            }
        }
        Ok((bytes, ct))
    }

    /// GET a blob; the response body streams.
    pub fn blob(&mut self, digest: &str) -> Result<Box<dyn Read + Send + Sync>> {
        media::digest_hex(digest)?;
        let url = self.url(&format!("blobs/{digest}"));
        let a = self.send("GET", &url, &[], Body::Empty)?;
        if a.status != 200 {
            let s = a.status;
            return Err(status_error(&format!("blob {digest}"), s, &a.text()));
        }
        Ok(a.resp.into_reader())
    }

    /// Whether the repository has a blob (HEAD).
    pub fn has_blob(&mut self, digest: &str) -> Result<bool> {
        let url = self.url(&format!("blobs/{digest}"));
        let a = self.send("HEAD", &url, &[], Body::Empty)?;
        match a.status {
            200 => Ok(true),
            404 => Ok(false),
            s => Err(status_error(&format!("checking blob {digest}"), s, "")),
        }
    }

    /// Try to mount a blob from another repository of the same registry: `Ok(None)` when
    /// mounted, `Ok(Some(location))` when the registry opened an upload instead.
    pub fn mount(&mut self, digest: &str, from: &str) -> Result<Option<String>> {
        self.add_pull_scope(from);
        let url = self.url(&format!(
            "blobs/uploads/?mount={}&from={}",
            auth::encode(digest),
            auth::encode(from)
        ));
        let a = self.send("POST", &url, &[], Body::Empty)?;
        match a.status {
            201 => Ok(None),
            202 => {
                let loc = a
                    .header("Location")
                    .ok_or_else(|| err!("the registry opened an upload without a Location"))?;
                Ok(Some(self.resolve(&loc)))
            }
            s => Err(status_error(
                &format!("mounting blob {digest}"),
                s,
                &a.text(),
            )),
        }
    }

    /// Open an upload session: its absolute location.
    pub fn start_upload(&mut self) -> Result<String> {
        let url = self.url("blobs/uploads/");
        let a = self.send("POST", &url, &[], Body::Empty)?;
        if a.status != 202 {
            let s = a.status;
            return Err(status_error("starting an upload", s, &a.text()));
        }
        let loc = a
            .header("Location")
            .ok_or_else(|| err!("the registry opened an upload without a Location"))?;
        Ok(self.resolve(&loc))
    }

    /// Finish an upload with the whole blob in one PUT.
    pub fn put_blob(&mut self, location: &str, digest: &str, body: Body<'_>) -> Result<()> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={}", auth::encode(digest));
        let a = self.send("PUT", &url, &[], body)?;
        if a.status != 201 && a.status != 204 {
            let s = a.status;
            return Err(status_error(
                &format!("uploading blob {digest}"),
                s,
                &a.text(),
            ));
        }
        Ok(())
    }

    /// Upload a manifest under a tag; the digest the registry reports (or ours).
    pub fn put_manifest(&mut self, tag: &str, bytes: &[u8], media_type: &str) -> Result<String> {
        let url = self.url(&format!("manifests/{tag}"));
        let a = self.send("PUT", &url, &[], Body::Bytes(bytes, media_type))?;
        if a.status != 201 && a.status != 200 {
            let s = a.status;
            return Err(status_error("uploading the manifest", s, &a.text()));
        }
        let ours = format!("sha256:{}", crate::util::sha256_hex(bytes));
        Ok(a.header("Docker-Content-Digest").unwrap_or(ours))
    }
}
