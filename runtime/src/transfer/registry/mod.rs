//! A client of the OCI distribution API over ureq: manifests, blob HEAD/GET, uploads
//! (POST then PUT, absolute or relative Location), cross-repository mounts, and Basic or
//! Bearer authentication answered on the first 401.
//!
//! A registry is not trusted: manifests and tokens are read with a size cap and a deadline,
//! every read stalls out after [`Options::timeout`], and a blob is cut off at the size its
//! descriptor gives, so neither an endless answer nor a silent server holds a pull forever.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::err;
use crate::util::Result;

use super::auth::{self, Creds};
use super::media;
use super::progress::Bar;
use super::reference::RemoteRef;

mod endpoints;
mod redirects;

use redirects::{origin, redirect_target, shown, MAX_REDIRECTS};

/// Manifests and indexes larger than this are refused (containerd's limit; real ones are a
/// few KiB, and the whole document is held in memory).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// Token service answers larger than this are refused (real tokens are a few KiB).
pub const MAX_TOKEN: u64 = 1 << 20;

/// How long a registry may stay silent (connect, or between two reads) by default; also the
/// deadline for a whole manifest or token.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// How long the registry may stay silent ([`DEFAULT_TIMEOUT`] when `None`).
    pub timeout: Option<Duration>,
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
    timeout: Duration,
}

/// Whether a transport or read error is a timeout (ureq reports both kinds).
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

fn transport_is_timeout(t: &ureq::Transport) -> bool {
    std::error::Error::source(t)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(is_timeout)
}

/// A blob's body: cut off past the size its descriptor gives (an endless body would
/// otherwise be read forever), a stall reported as such.
pub struct BlobReader {
    inner: Box<dyn Read + Send + Sync>,
    limit: Option<u64>,
    count: u64,
    registry: String,
    timeout: Duration,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if is_timeout(&e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{} sent nothing for {} s (a longer --timeout SECS waits longer)",
                        self.registry,
                        self.timeout.as_secs()
                    ),
                ))
            }
            Err(e) => return Err(e),
        };
        self.count += n as u64;
        match self.limit {
            Some(l) if self.count > l => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} sent more than the {l} bytes the manifest gives",
                    self.registry
                ),
            )),
            _ => Ok(n),
        }
    }
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
        .unwrap_or_else(|| body.lines().next().unwrap_or("").to_string());
    err!(
        "{what}: the registry answered HTTP {status} {}",
        shown(&detail)
    )
}

impl Client {
    /// A client for the repository `r` names, asking for `push` rights when pushing.
    pub fn new(r: &RemoteRef, o: &Options, push: bool) -> Client {
        let scheme = if o.insecure || r.is_local() {
            "http"
        } else {
            "https"
        };
        let timeout = o.timeout.unwrap_or(DEFAULT_TIMEOUT);
        // Read and write timeouts are per socket operation: they bound a stall, not a
        // long download.
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout.min(Duration::from_secs(30)))
            .timeout_read(timeout)
            .timeout_write(timeout)
            // Redirects are followed by `exchange`: ureq 2.12 panics on a Location without
            // a host (`file:///etc/passwd`).
            .redirects(0)
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
            timeout,
        }
    }

    fn transport_error(&self, t: &ureq::Transport, what: &str) -> crate::util::Error {
        if transport_is_timeout(t) {
            return err!(
                "{what}: no answer within {} s (pass a longer --timeout SECS if the registry is just slow)",
                self.timeout.as_secs()
            );
        }
        let hint =
            if !self.base.starts_with("http://") && t.kind() == ureq::ErrorKind::ConnectionFailed {
                " (a registry without TLS needs --insecure)"
            } else {
                ""
            };
        err!("{what}: {t}{hint}")
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

    /// One HTTP request, no redirects followed; `auth` is the Authorization header.
    #[allow(clippy::too_many_arguments)]
    fn request_once(
        &self,
        method: &str,
        url: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: &Body<'_>,
        whole: bool,
        who: &str,
    ) -> Result<Answer> {
        let mut req = self.agent.request(method, url);
        if whole {
            // A small document: the whole answer, body included, within the timeout, so a
            // server dripping a byte now and then cannot hold the pull.
            req = req.timeout(self.timeout);
        }
        if let Some(a) = auth {
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
                Err(self.transport_error(&t, &format!("cannot reach {who}")))
            }
        }
    }

    /// A request, following redirects of GET and HEAD. `auth` goes only to the origin of
    /// `url`, never to a redirect target elsewhere (Go's client, and so docker, behave alike).
    #[allow(clippy::too_many_arguments)]
    fn exchange(
        &self,
        method: &str,
        url: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: &Body<'_>,
        whole: bool,
        who: &str,
    ) -> Result<Answer> {
        let home = origin(url);
        let mut url = url.to_string();
        let mut hops = 0;
        loop {
            let auth = auth.filter(|_| origin(&url) == home);
            let a = self.request_once(method, &url, auth, headers, body, whole, who)?;
            let redirect =
                matches!(a.status, 301 | 302 | 303 | 307 | 308) && matches!(method, "GET" | "HEAD");
            let Some(location) = a.header("Location").filter(|_| redirect) else {
                return Ok(a);
            };
            if hops == MAX_REDIRECTS {
                return Err(err!(
                    "{who} redirected more than {MAX_REDIRECTS} times (last to {:?}): a redirect loop",
                    shown(&location)
                ));
            }
            hops += 1;
            url = redirect_target(&url, &location).map_err(|e| err!("{who} {e}"))?;
        }
    }

    fn send_once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
        whole: bool,
    ) -> Result<Answer> {
        self.exchange(
            method,
            url,
            self.auth.as_deref(),
            headers,
            body,
            whole,
            &self.reference.registry,
        )
    }

    /// Send a request, authenticating and retrying once on a 401.
    pub fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Answer> {
        self.send_opts(method, url, headers, body, false)
    }

    /// [`Client::send`]; `whole` puts the whole exchange, body included, under the timeout.
    fn send_opts(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
        whole: bool,
    ) -> Result<Answer> {
        let a = self.send_once(method, url, headers, &body, whole)?;
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
        let a = self.send_once(method, url, headers, &body, whole)?;
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
                let shown_realm = shown(realm);
                let who = format!("the token service {shown_realm}");
                let basic = self.creds.as_ref().map(Creds::basic);
                let a =
                    self.exchange("GET", &url, basic.as_deref(), &[], &Body::Empty, true, &who)?;
                match a.status {
                    200 => {}
                    401 | 403 => {
                        return Err(if self.creds.is_some() {
                            err!(
                                "{who} refused the credentials: check --creds or docker's config.json"
                            )
                        } else {
                            self.need_creds()
                        })
                    }
                    s => return Err(status_error(&who, s, &a.text())),
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    #[serde(default)]
                    token: Option<String>,
                    #[serde(default)]
                    access_token: Option<String>,
                }
                let mut body = Vec::new();
                a.resp
                    .into_reader()
                    .take(MAX_TOKEN + 1)
                    .read_to_end(&mut body)
                    .map_err(|e| {
                        if is_timeout(&e) {
                            err!("{who} did not answer within {} s", self.timeout.as_secs())
                        } else {
                            err!("cannot read the token from {who}: {e}")
                        }
                    })?;
                if body.len() as u64 > MAX_TOKEN {
                    return Err(err!(
                        "{who} answered more than {MAX_TOKEN} bytes: refusing it"
                    ));
                }
                let t: Token = serde_json::from_slice(&body)
                    .map_err(|e| err!("{who} answered something else than a token: {e}"))?;
                let tok = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| err!("{who} answered no token"))?;
                self.auth = Some(format!("Bearer {tok}"));
                Ok(())
            }
            other => Err(err!(
                "{} asks for {other} authentication, which strata does not speak",
                self.reference.registry
            )),
        }
    }
}
