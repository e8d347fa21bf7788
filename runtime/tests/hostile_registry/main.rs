//! A registry serving hostile content to `strata pull`: a small HTTP/1.1 server in this
//! process (std::net on 127.0.0.1, scripted per case) speaks the OCI distribution API to the
//! real strata binary over TCP. Wrong digests (manifest by digest, Docker-Content-Digest,
//! config, layer, diff_id), truncated and endless bodies, hostile layer tars, huge manifests,
//! configs and tokens, index loops and chains, malformed digests and media types, redirect
//! loops, broken token services, silent and dripping servers, a gzip bomb; and a valid image
//! served the same way (pulled and run), so that the refusals mean something.
//!
//! Every refused pull must exit non-zero within a time bound with a one-line error naming the
//! problem, leave the store byte-for-byte unchanged (no staging leftovers) and write nothing
//! outside it (a canary directory beside the store, the working directory, /etc/passwd).
//! Rootful (the positive control runs a container).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
use common::{busybox, sha, snapshot, strata_bin};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::Digest;

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha(data))
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

// ---- the server ----

/// One request as the server read it.
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Headers = Vec<(String, String)>;

fn h(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What the server does with a request.
enum Reply {
    /// Status, headers and a whole body (Content-Length set).
    Full(u16, Headers, Vec<u8>),
    /// 200 claiming `claimed` bytes, sending `body`, then closing.
    Short(Headers, u64, Vec<u8>),
    /// 200 with Content-Length `claimed` and `chunk` repeated until the client goes away.
    Flood(Headers, u64, Vec<u8>),
    /// 200, chunked, `chunk` repeated until the client goes away.
    Endless(Headers, Vec<u8>),
    /// 200, chunked, `first`, then `chunk` repeated until the client goes away.
    EndlessAfter(Headers, Vec<u8>, Vec<u8>),
    /// 200 with Content-Length `claimed`, `body`, then a byte every 300 ms.
    Drip(Headers, u64, Vec<u8>),
    /// 200 with Content-Length `claimed`, `body`, then silence.
    Stall(Headers, u64, Vec<u8>),
    /// The request is read and never answered.
    Silent,
    /// Bytes in the given order, then close (a generated body too big to hold).
    Stream(Headers, u64, Box<dyn Read + Send>),
}

type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 answering every request with a fresh connection-close
/// reply from its handler, in a thread per connection.
struct Server {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (log2, stop2) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (handler, log, stop) = (handler.clone(), log2.clone(), stop2.clone());
                std::thread::spawn(move || serve(conn, &*handler, &log, &stop));
            }
        });
        Server { port, log, stop }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// "METHOD PATH [auth]" of every request so far.
    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_request(conn: &TcpStream) -> Option<Req> {
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    let mut total = 0;
    loop {
        let mut l = String::new();
        let n = r.read_line(&mut l).ok()?;
        total += n;
        if n == 0 || total > 16 << 20 {
            return None;
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Some(Req {
        method,
        path,
        headers,
    })
}

fn head(status: u16, headers: &Headers, length: Option<u64>) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Whatever",
    };
    let mut s = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    match length {
        Some(n) => s.push_str(&format!("Content-Length: {n}\r\n")),
        None => s.push_str("Transfer-Encoding: chunked\r\n"),
    }
    s.push_str("\r\n");
    s.into_bytes()
}

fn serve(mut conn: TcpStream, handler: &Handler, log: &Mutex<Vec<String>>, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let Some(req) = read_request(&conn) else {
        return;
    };
    log.lock().unwrap().push(format!(
        "{} {}{}",
        req.method,
        req.path,
        if req.header("Authorization").is_some() {
            " [auth]"
        } else {
            ""
        }
    ));
    let with_body = req.method != "HEAD";
    // Write errors mean the client went away: that ends the connection.
    let _ = (|| -> std::io::Result<()> {
        match handler(&req) {
            Reply::Full(status, headers, body) => {
                conn.write_all(&head(status, &headers, Some(body.len() as u64)))?;
                if with_body {
                    conn.write_all(&body)?;
                }
            }
            Reply::Short(headers, claimed, body) => {
                conn.write_all(&head(200, &headers, Some(claimed)))?;
                conn.write_all(&body)?;
            }
            Reply::Flood(headers, claimed, chunk) => {
                conn.write_all(&head(200, &headers, Some(claimed)))?;
                while !stop.load(Ordering::SeqCst) {
                    conn.write_all(&chunk)?;
                }
            }
            Reply::Endless(headers, chunk) => endless(&mut conn, &headers, &[], &chunk, stop)?,
            Reply::EndlessAfter(headers, first, chunk) => {
                endless(&mut conn, &headers, &first, &chunk, stop)?
            }
            Reply::Drip(headers, claimed, body) => {
                conn.write_all(&head(200, &headers, Some(claimed)))?;
                conn.write_all(&body)?;
                for _ in 0..1000 {
                    std::thread::sleep(Duration::from_millis(300));
                    conn.write_all(b" ")?;
                }
            }
            Reply::Stall(headers, claimed, body) => {
                conn.write_all(&head(200, &headers, Some(claimed)))?;
                conn.write_all(&body)?;
                wait_for_close(&mut conn);
            }
            Reply::Silent => wait_for_close(&mut conn),
            Reply::Stream(headers, len, mut body) => {
                conn.write_all(&head(200, &headers, Some(len)))?;
                std::io::copy(&mut body, &mut conn)?;
            }
        }
        conn.flush()
    })();
}

fn endless(
    conn: &mut TcpStream,
    headers: &Headers,
    first: &[u8],
    chunk: &[u8],
    stop: &AtomicBool,
) -> std::io::Result<()> {
    conn.write_all(&head(200, headers, None))?;
    let frame = |c: &[u8]| [format!("{:x}\r\n", c.len()).as_bytes(), c, b"\r\n"].concat();
    if !first.is_empty() {
        conn.write_all(&frame(first))?;
    }
    let framed = frame(chunk);
    while !stop.load(Ordering::SeqCst) {
        conn.write_all(&framed)?;
    }
    Ok(())
}

/// Hold the connection open, saying nothing, until the client closes it.
fn wait_for_close(conn: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

// ---- images ----

/// A registry repository's content: manifests by tag or digest, blobs by digest.
#[derive(Clone, Default)]
struct Repo {
    manifests: HashMap<String, (String, Vec<u8>)>,
    blobs: HashMap<String, Vec<u8>>,
}

impl Repo {
    fn manifest(&mut self, tag: &str, media_type: &str, body: Vec<u8>) -> String {
        let d = digest(&body);
        self.manifests
            .insert(d.clone(), (media_type.into(), body.clone()));
        self.manifests
            .insert(tag.to_string(), (media_type.into(), body));
        d
    }

    fn blob(&mut self, body: Vec<u8>) -> String {
        let d = digest(&body);
        self.blobs.insert(d.clone(), body);
        d
    }

    /// The standard answer to `req` for repository `x`.
    fn answer(&self, req: &Req) -> Reply {
        let p = req.path.split('?').next().unwrap_or("");
        if p == "/v2/" || p == "/v2" {
            return Reply::Full(
                200,
                h(&[("Content-Type", "application/json")]),
                b"{}".into(),
            );
        }
        if let Some(r) = p.strip_prefix("/v2/x/manifests/") {
            if let Some((ct, body)) = self.manifests.get(r) {
                return Reply::Full(
                    200,
                    h(&[
                        ("Content-Type", ct),
                        ("Docker-Content-Digest", &digest(body)),
                    ]),
                    body.clone(),
                );
            }
        }
        if let Some(d) = p.strip_prefix("/v2/x/blobs/") {
            if let Some(body) = self.blobs.get(d) {
                return Reply::Full(
                    200,
                    h(&[("Content-Type", "application/octet-stream")]),
                    body.clone(),
                );
            }
        }
        Reply::Full(
            404,
            h(&[("Content-Type", "application/json")]),
            br#"{"errors":[{"code":"NOT_FOUND","message":"not found"}]}"#.to_vec(),
        )
    }
}

fn config_json(diff_ids: &[String]) -> Vec<u8> {
    let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"{{"architecture":"{}","os":"linux","config":{{"Env":["PATH=/bin"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        arch(),
        ids.join(",")
    )
    .into_bytes()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A descriptor as JSON.
fn desc(media_type: &str, digest: &str, size: u64) -> String {
    format!(r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{size}}}"#)
}

fn manifest_json(config: &str, layers: &[String]) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{config},"layers":[{}]}}"#,
        layers.join(",")
    )
    .into_bytes()
}

fn index_json(entries: &[String]) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes()
}

fn platform_entry(media_type: &str, digest: &str, size: usize, os: &str, arch: &str) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{size},"platform":{{"os":"{os}","architecture":"{arch}"}}}}"#
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    g.write_all(data).unwrap();
    g.finish().unwrap()
}

/// An image in `repo` under `tag`: one gzip layer per tar; the manifest digest.
fn add_image(repo: &mut Repo, tag: &str, tars: &[Vec<u8>]) -> String {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for t in tars {
        let gz = gzip(t);
        let len = gz.len() as u64;
        layers.push(desc(LAYER_GZIP, &repo.blob(gz), len));
        diff_ids.push(digest(t));
    }
    let cfg = config_json(&diff_ids);
    let len = cfg.len() as u64;
    let c = desc(OCI_CONFIG, &repo.blob(cfg), len);
    repo.manifest(tag, OCI_MANIFEST, manifest_json(&c, &layers))
}

/// A tar with the names and link names written raw (tar::Builder refuses `..`).
fn tar_raw(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(if *kind == tar::EntryType::Symlink {
            0o777
        } else {
            0o644
        });
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(*kind);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> (&'a str, tar::EntryType, &'a [u8], &'a str) {
    (name, tar::EntryType::Regular, data, "")
}

/// A busybox rootfs tar (Debian's busybox-static).
fn busybox_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(1_700_000_000);
    dir.set_uid(0);
    dir.set_gid(0);
    for d in ["bin", "etc", "tmp"] {
        b.append_data(&mut dir.clone(), d, &[][..]).unwrap();
    }
    let bb = std::fs::read(busybox()).unwrap();
    let mut fh = tar::Header::new_gnu();
    fh.set_mode(0o755);
    fh.set_size(bb.len() as u64);
    fh.set_mtime(1_700_000_000);
    fh.set_uid(0);
    fh.set_gid(0);
    b.append_data(&mut fh, "bin/busybox", &bb[..]).unwrap();
    for a in ["sh", "echo", "cat", "true"] {
        let mut s = tar::Header::new_gnu();
        s.set_entry_type(tar::EntryType::Symlink);
        s.set_mode(0o777);
        s.set_size(0);
        s.set_mtime(1_700_000_000);
        s.set_uid(0);
        s.set_gid(0);
        b.append_link(&mut s, format!("bin/{a}"), "busybox")
            .unwrap();
    }
    b.into_inner().unwrap()
}

// ---- the store under test ----

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A private directory: the store `s`, a canary directory beside it, strata's working
/// directory `cwd`.
struct Env {
    dir: PathBuf,
}

impl Env {
    fn new() -> Env {
        assert!(nix::unistd::geteuid().is_root(), "these tests need root");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("strata-hreg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("canary")).unwrap();
        std::fs::write(dir.join("canary/secret"), "canary\n").unwrap();
        std::fs::create_dir_all(dir.join("cwd")).unwrap();
        Env { dir }
    }

    fn store(&self) -> PathBuf {
        self.dir.join("s")
    }

    /// strata with its store, killed (and the test failed) past `limit`.
    fn strata(&self, args: &[&str], limit: Duration) -> (Output, Duration) {
        let start = Instant::now();
        let child = Command::new(strata_bin())
            .arg("--root")
            .arg(self.store())
            .args(args)
            .current_dir(self.dir.join("cwd"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(limit) {
            Ok(out) => (out.unwrap(), start.elapsed()),
            Err(_) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = rx.recv_timeout(Duration::from_secs(10));
                panic!("strata {args:?} hung: still running after {limit:?}");
            }
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        let (out, _) = self.strata(args, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "strata {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Everything a refused pull must leave as it was.
struct Baseline {
    store: Vec<String>,
    canary: Vec<String>,
}

impl Baseline {
    fn take(e: &Env) -> Baseline {
        Baseline {
            store: snapshot(&e.store()),
            canary: snapshot(&e.dir.join("canary")),
        }
    }

    /// `strata pull REF` must fail within `limit` with one line matching one of `expect`
    /// (`|`-separated) and change nothing; the error and how long it took.
    fn refused(
        &self,
        e: &Env,
        name: &str,
        args: &[&str],
        expect: &str,
        limit: Duration,
    ) -> (String, Duration) {
        let (out, took) = e.strata(args, limit);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "{name}: strata {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: one line: {err:?}");
        assert!(
            expect.split('|').any(|x| err.contains(x)),
            "{name}: expected {expect:?} in: {err}"
        );
        let tmp: Vec<_> = std::fs::read_dir(e.store().join("tmp"))
            .unwrap()
            .flatten()
            .map(|x| x.file_name())
            .collect();
        assert!(tmp.is_empty(), "{name}: staging left behind: {tmp:?}");
        assert_eq!(
            snapshot(&e.store()),
            self.store,
            "{name}: the store changed"
        );
        assert_eq!(
            snapshot(&e.dir.join("canary")),
            self.canary,
            "{name}: the canary changed"
        );
        let cwd: Vec<_> = std::fs::read_dir(e.dir.join("cwd"))
            .unwrap()
            .flatten()
            .map(|x| x.file_name())
            .collect();
        assert!(
            cwd.is_empty(),
            "{name}: written in the working dir: {cwd:?}"
        );
        for escape in ["escape", "abs"] {
            assert!(!e.dir.join(escape).exists(), "{name}: {escape} written");
            assert!(!Path::new("/").join(escape).exists(), "{name}: /{escape}");
        }
        assert!(
            !std::fs::read_to_string("/etc/passwd")
                .unwrap_or_default()
                .contains("pwned"),
            "{name}: /etc/passwd was written"
        );
        (err.trim().to_string(), took)
    }
}

/// A store holding a valid image pulled from `good`, to compare refused pulls against.
fn store_with_good_image(e: &Env) -> Server {
    let mut repo = Repo::default();
    add_image(&mut repo, "good", &[busybox_tar()]);
    let good = Server::start(move |r| repo.answer(r));
    e.ok(&["pull", &format!("{}/x:good", good.host())]);
    good
}

const LIMIT: Duration = Duration::from_secs(30);

// ---- the cases ----

#[test]
fn valid_image_pulls_and_runs() {
    let e = Env::new();
    // Served behind a Bearer token service, its blobs redirected to a second server (as
    // registries redirect to a CDN): the same paths the refusals below take.
    let mut repo = Repo::default();
    let bb = busybox_tar();
    let mdigest = add_image(
        &mut repo,
        "1",
        &[bb.clone(), tar_raw(&[file("etc/extra", b"x")])],
    );
    let cdn_repo = repo.clone();
    let cdn = Server::start(move |r| cdn_repo.answer(r));
    let cdn_host = cdn.host();
    let token = "tok3n";
    let reg = Server::start(move |r| {
        let p = r.path.split('?').next().unwrap_or("");
        if p == "/token" {
            return Reply::Full(
                200,
                h(&[("Content-Type", "application/json")]),
                format!(r#"{{"token":"{token}"}}"#).into_bytes(),
            );
        }
        if r.header("Authorization") != Some(format!("Bearer {token}").as_str()) {
            let me = r.header("Host").unwrap_or("");
            return Reply::Full(
                401,
                h(&[(
                    "WWW-Authenticate",
                    &format!(
                        r#"Bearer realm="http://{me}/token",service="test",scope="repository:x:pull""#
                    ),
                )]),
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"auth"}]}"#.to_vec(),
            );
        }
        if p.starts_with("/v2/x/blobs/") {
            return Reply::Full(
                307,
                h(&[("Location", &format!("http://{cdn_host}{p}"))]),
                vec![],
            );
        }
        repo.answer(r)
    });
    let out = e.ok(&["pull", &format!("{}/x:1", reg.host())]);
    assert!(out.contains("2 layers, 2 fetched"), "{out}");
    let got = e.ok(&[
        "run",
        "--rm",
        &format!("{}/x:1", reg.host()),
        "cat",
        "/etc/extra",
    ]);
    assert_eq!(got, "x");
    // The blobs came from the second server, without the registry's token.
    let cdn_log = cdn.requests();
    assert_eq!(
        cdn_log
            .iter()
            .filter(|l| l.starts_with("GET /v2/x/blobs/"))
            .count(),
        3,
        "{cdn_log:?}"
    );
    assert!(
        cdn_log.iter().all(|l| !l.contains("[auth]")),
        "the token went to the redirect target: {cdn_log:?}"
    );
    // By digest (untagged): nothing fetched again.
    let out = e.ok(&["pull", &format!("{}/x@{mdigest}", reg.host())]);
    assert!(out.contains("2 layers, 0 fetched"), "{out}");
    // An image without layers is valid (docker builds them FROM scratch).
    let mut empty = Repo::default();
    let cfg = config_json(&[]);
    let len = cfg.len() as u64;
    let c = desc(OCI_CONFIG, &empty.blob(cfg), len);
    empty.manifest("empty", OCI_MANIFEST, manifest_json(&c, &[]));
    let s = Server::start(move |r| empty.answer(r));
    let out = e.ok(&["pull", &format!("{}/x:empty", s.host())]);
    assert!(out.contains("0 layers"), "{out}");
    assert!(e.ok(&["images"]).contains(&format!("{}/x", s.host())));
}

#[test]
fn hostile_registries_are_refused_and_change_nothing() {
    let e = Env::new();
    let _good = store_with_good_image(&e);
    let base = Baseline::take(&e);
    let canary = e.dir.join("canary");
    let up = "../".repeat(12);

    // A valid one-layer image to break in one place at a time.
    let small = tar_raw(&[file("etc/hostname", b"hostile\n")]);
    let mut repo = Repo::default();
    let mdigest = add_image(&mut repo, "1", std::slice::from_ref(&small));
    let (_, m_bytes) = repo.manifests["1"].clone();
    let m: serde_json::Value = serde_json::from_slice(&m_bytes).unwrap();
    let cfg_digest = m["config"]["digest"].as_str().unwrap().to_string();
    let layer_digest = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let cfg_bytes = repo.blobs[&cfg_digest].clone();
    let cfg_len = cfg_bytes.len() as u64;
    let cfgd = desc(OCI_CONFIG, &cfg_digest, cfg_len);
    let layer_gz = repo.blobs[&layer_digest].clone();
    let layerd = desc(LAYER_GZIP, &layer_digest, layer_gz.len() as u64);

    // Each case: a name, how to make the repository (and an optional override of the
    // answer), the tag or @digest to pull, the expected words in the error.
    type Hook = Box<dyn Fn(&Req) -> Option<Reply> + Send + Sync>;
    struct Case {
        name: &'static str,
        repo: Repo,
        hook: Option<Hook>,
        pull: String,
        expect: &'static str,
    }
    let mut cases: Vec<Case> = Vec::new();
    let mut add = |name, repo: Repo, hook: Option<Hook>, pull: &str, expect| {
        cases.push(Case {
            name,
            repo,
            hook,
            pull: pull.to_string(),
            expect,
        })
    };
    fn with_manifest(base: &Repo, tag: &str, body: Vec<u8>) -> Repo {
        let mut r = base.clone();
        r.manifest(tag, OCI_MANIFEST, body);
        r
    }
    fn on(
        path_part: impl Into<String>,
        reply: impl Fn() -> Reply + Send + Sync + 'static,
    ) -> Option<Hook> {
        let part = path_part.into();
        Some(Box::new(move |r: &Req| r.path.contains(&part).then(&reply)))
    }

    // Digests.
    {
        let other = manifest_json(&cfgd, &[]);
        let mut r = repo.clone();
        r.manifests
            .insert(mdigest.clone(), (OCI_MANIFEST.into(), other));
        add(
            "manifest by digest with other content",
            r,
            None,
            &format!("@{mdigest}"),
            "digest",
        );
    }
    {
        let other = digest(b"another manifest");
        let body = m_bytes.clone();
        add(
            "tag manifest unlike its Docker-Content-Digest",
            repo.clone(),
            on("/manifests/1", move || {
                Reply::Full(
                    200,
                    h(&[
                        ("Content-Type", OCI_MANIFEST),
                        ("Docker-Content-Digest", &other),
                    ]),
                    body.clone(),
                )
            }),
            ":1",
            "Docker-Content-Digest|says its digest",
        );
    }
    {
        let mut r = repo.clone();
        let mut bad = cfg_bytes.clone();
        let n = bad.len();
        bad[n - 2] = b' ';
        r.blobs.insert(cfg_digest.clone(), bad);
        add("config unlike its digest", r, None, ":1", "digest");
    }
    {
        // Same size, same diff_id: only the blob digest tells.
        let mut r = Repo::default();
        let t = tar_raw(&[file("etc/a", b"aaaa")]);
        let t2 = tar_raw(&[file("etc/b", b"bbbb")]);
        let cfg = config_json(&[digest(&t)]);
        let cl = cfg.len() as u64;
        let c = desc(OCI_CONFIG, &r.blob(cfg), cl);
        let l = desc(LAYER_TAR, &digest(&t2), t2.len() as u64);
        r.blobs.insert(digest(&t2), t);
        r.manifest("1", OCI_MANIFEST, manifest_json(&c, &[l]));
        add("layer unlike its digest", r, None, ":1", "blob has digest");
    }
    {
        let mut r = Repo::default();
        let t = tar_raw(&[file("etc/a", b"aaaa")]);
        let cfg = config_json(&[digest(b"something else")]);
        let cl = cfg.len() as u64;
        let c = desc(OCI_CONFIG, &r.blob(cfg), cl);
        let tl = t.len() as u64;
        let l = desc(LAYER_TAR, &r.blob(t), tl);
        r.manifest("1", OCI_MANIFEST, manifest_json(&c, &[l]));
        add(
            "layer unlike its diff_id",
            r,
            None,
            ":1",
            "diff_id|image config lists",
        );
    }
    {
        let big = tar_raw(&[file("etc/big", &[7u8; 200_000])]);
        let gz = gzip(&big);
        let mut r = Repo::default();
        add_image(&mut r, "1", &[big]);
        let ld = digest(&gz);
        let half = gz[..gz.len() / 2].to_vec();
        let n = gz.len() as u64;
        add(
            "layer cut off mid-stream",
            r,
            on(format!("/blobs/{ld}"), move || {
                Reply::Short(h(&[]), n, half.clone())
            }),
            ":1",
            "closed before|truncated|corrupt|unexpected end",
        );
    }
    // Hostile layer tars.
    for (name, t, expect) in [
        (
            "layer with ../",
            tar_raw(&[file(&format!("a/{up}escape"), b"x")]),
            "escapes the root",
        ),
        (
            "layer a -> /etc then a/passwd",
            tar_raw(&[
                ("a", tar::EntryType::Symlink, b"", "/etc"),
                file("a/passwd", b"pwned::0:0::/:/bin/sh\n"),
            ]),
            "symlink|not a directory",
        ),
        (
            "layer with an absolute name",
            tar_raw(&[file(&format!("{}/abs", canary.display()), b"x")]),
            "absolute path",
        ),
    ] {
        let mut r = Repo::default();
        add_image(&mut r, "1", &[t]);
        add(name, r, None, ":1", expect);
    }
    // Sizes.
    {
        let junk = b"[{\"a\":1},".repeat(1000);
        add(
            "manifest of 100 MiB",
            repo.clone(),
            on("/manifests/1", move || {
                Reply::Flood(
                    h(&[("Content-Type", OCI_MANIFEST)]),
                    100 << 20,
                    junk.clone(),
                )
            }),
            ":1",
            "larger than",
        );
    }
    {
        let junk = b"{\"manifests\":[".repeat(1000);
        add(
            "endless index",
            repo.clone(),
            on("/manifests/1", move || {
                Reply::Endless(h(&[("Content-Type", OCI_INDEX)]), junk.clone())
            }),
            ":1",
            "larger than",
        );
    }
    {
        let cd = cfg_digest.clone();
        add(
            "endless config (manifest gives its size)",
            repo.clone(),
            on(format!("/blobs/{cd}"), || {
                Reply::Endless(h(&[]), b"{\"a\":\"".repeat(1000))
            }),
            ":1",
            "more than",
        );
        let huge = desc(OCI_CONFIG, &cfg_digest, 100 << 20);
        add(
            "config of 100 MiB by its descriptor",
            with_manifest(
                &repo,
                "1",
                manifest_json(&huge, std::slice::from_ref(&layerd)),
            ),
            None,
            ":1",
            "more than",
        );
        let nosize = format!(r#"{{"mediaType":"{OCI_CONFIG}","digest":"{cfg_digest}"}}"#);
        let cd = cfg_digest.clone();
        let mut r = with_manifest(
            &repo,
            "1",
            manifest_json(&nosize, std::slice::from_ref(&layerd)),
        );
        r.blobs.remove(&cd);
        add(
            "endless config without a size",
            r,
            on(format!("/blobs/{cd}"), || {
                Reply::Endless(h(&[]), b"{\"a\":\"".repeat(1000))
            }),
            ":1",
            "larger than",
        );
    }
    {
        let ld = layer_digest.clone();
        let gz = layer_gz.clone();
        add(
            "layer longer than its descriptor",
            repo.clone(),
            // Valid empty gzip members: without a bound, reading "the rest of the blob"
            // never ends.
            on(format!("/blobs/{ld}"), move || {
                Reply::EndlessAfter(h(&[]), gz.clone(), gzip(b"").repeat(1000))
            }),
            ":1",
            "more than the",
        );
    }
    // Indexes.
    {
        let mut r = repo.clone();
        let entry = platform_entry(OCI_MANIFEST, &mdigest, m_bytes.len(), "linux", arch());
        let inner = index_json(&[entry]);
        let inner_d = r.manifest("inner", OCI_INDEX, inner.clone());
        let outer = index_json(&[platform_entry(
            OCI_INDEX,
            &inner_d,
            inner.len(),
            "linux",
            arch(),
        )]);
        let outer_d = digest(&outer);
        r.manifests
            .insert("chain".into(), (OCI_INDEX.into(), outer.clone()));
        add(
            "index of an index",
            r.clone(),
            None,
            ":chain",
            "nested indexes",
        );
        // An index naming itself: whatever the server sends for that digest cannot match.
        let mut r2 = r.clone();
        let selfish = index_json(&[platform_entry(
            OCI_INDEX,
            &outer_d,
            outer.len(),
            "linux",
            arch(),
        )]);
        r2.manifests
            .insert("self".into(), (OCI_INDEX.into(), selfish.clone()));
        r2.manifests
            .insert(outer_d.clone(), (OCI_INDEX.into(), selfish));
        add("index referring to itself", r2, None, ":self", "digest");
        let other = index_json(&[
            platform_entry(OCI_MANIFEST, &mdigest, m_bytes.len(), "linux", "s390x"),
            platform_entry(OCI_MANIFEST, &mdigest, m_bytes.len(), "windows", arch()),
        ]);
        r.manifests
            .insert("other".into(), (OCI_INDEX.into(), other));
        add(
            "index without this platform",
            r.clone(),
            None,
            ":other",
            "no image for linux/",
        );
        let md5 = index_json(&[platform_entry(
            OCI_MANIFEST,
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            m_bytes.len(),
            "linux",
            arch(),
        )]);
        r.manifests.insert("weak".into(), (OCI_INDEX.into(), md5));
        add(
            "index entry with an md5 digest",
            r,
            None,
            ":weak",
            "unsupported digest",
        );
    }
    // Manifests.
    {
        add(
            "0 layers but the config has 1",
            with_manifest(&repo, "1", manifest_json(&cfgd, &[])),
            None,
            ":1",
            "lists 0 layers",
        );
        let bz = desc(
            "application/vnd.oci.image.layer.v1.tar+bzip2",
            &layer_digest,
            layer_gz.len() as u64,
        );
        add(
            "layer media type bzip2",
            with_manifest(&repo, "1", manifest_json(&cfgd, &[bz])),
            None,
            ":1",
            "cannot unpack",
        );
        let helm = desc(
            "application/vnd.cncf.helm.config.v1+json",
            &cfg_digest,
            cfg_len,
        );
        add(
            "a helm chart, not an image",
            with_manifest(
                &repo,
                "1",
                manifest_json(&helm, std::slice::from_ref(&layerd)),
            ),
            None,
            ":1",
            "not a container image",
        );
        for (name, d, expect) in [
            (
                "config digest sha256:../../etc",
                "sha256:../../etc",
                "malformed digest",
            ),
            (
                "layer digest with path characters",
                "sha256:../../../../etc/passwd",
                "malformed digest",
            ),
            (
                "layer digest sha512",
                &*format!("sha512:{}", "a".repeat(128)),
                "unsupported digest",
            ),
        ] {
            let body = if name.starts_with("config") {
                manifest_json(&desc(OCI_CONFIG, d, cfg_len), std::slice::from_ref(&layerd))
            } else {
                manifest_json(&cfgd, &[desc(LAYER_GZIP, d, 100)])
            };
            add(name, with_manifest(&repo, "1", body), None, ":1", expect);
        }
        let mut r = Repo::default();
        let cfg = config_json(&["sha256:../../../x".to_string()]);
        let cl = cfg.len() as u64;
        let c = desc(OCI_CONFIG, &r.blob(cfg), cl);
        let l = desc(LAYER_GZIP, &layer_digest, layer_gz.len() as u64);
        r.blobs.insert(layer_digest.clone(), layer_gz.clone());
        r.manifest("1", OCI_MANIFEST, manifest_json(&c, &[l]));
        add(
            "diff_id with path characters",
            r,
            None,
            ":1",
            "malformed digest",
        );
        add(
            "schema 1 manifest",
            with_manifest(
                &repo,
                "1",
                br#"{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[]}"#.to_vec(),
            ),
            None,
            ":1",
            "schema 1",
        );
        add(
            "manifest not JSON",
            with_manifest(&repo, "1", b"<html>\n<h1>It works!</h1>\n".to_vec()),
            None,
            ":1",
            "not valid JSON",
        );
        add(
            "error message with a newline and an escape",
            repo.clone(),
            on("/manifests/1", || {
                Reply::Full(
                    500,
                    h(&[("Content-Type", "application/json")]),
                    br#"{"errors":[{"code":"X","message":"line one\nline two \u001b[31mred"}]}"#
                        .to_vec(),
                )
            }),
            ":1",
            "HTTP 500",
        );
    }
    // Redirects.
    {
        let ld = layer_digest.clone();
        add(
            "blob redirect loop",
            repo.clone(),
            on(format!("/blobs/{ld}"), move || {
                Reply::Full(
                    307,
                    h(&[("Location", &format!("/v2/x/blobs/{ld}?again"))]),
                    vec![],
                )
            }),
            ":1",
            "Too Many Redirects|redirect",
        );
        let ld = layer_digest.clone();
        add(
            "blob redirect to file:///etc/passwd",
            repo.clone(),
            on(format!("/blobs/{ld}"), || {
                Reply::Full(307, h(&[("Location", "file:///etc/passwd")]), vec![])
            }),
            ":1",
            "only http and https",
        );
    }
    // Token services.
    type Make = Box<dyn Fn() -> Reply + Send + Sync>;
    let token_cases: Vec<(&str, Make, &str)> = vec![
        (
            "token service answering garbage",
            Box::new(|| Reply::Full(200, h(&[]), b"\x00\xffnot json\n\n".to_vec())),
            "something else than a token",
        ),
        (
            "token of 2 MiB",
            Box::new(|| {
                let mut t = b"{\"token\":\"".to_vec();
                t.extend(vec![b'A'; 2 << 20]);
                t.extend(b"\"}");
                Reply::Full(200, h(&[("Content-Type", "application/json")]), t)
            }),
            "more than",
        ),
        (
            "endless token",
            Box::new(|| Reply::Endless(h(&[]), b"AAAAAAAA".repeat(1024))),
            "more than",
        ),
        (
            "token service error",
            Box::new(|| {
                Reply::Full(
                    500,
                    h(&[]),
                    br#"{"errors":[{"code":"X","message":"token service on fire"}]}"#.to_vec(),
                )
            }),
            "HTTP 500",
        ),
        (
            "token answer without a token",
            Box::new(|| Reply::Full(200, h(&[]), br#"{"expires_in":60}"#.to_vec())),
            "no token",
        ),
    ];
    for (name, token, expect) in token_cases {
        add(
            name,
            repo.clone(),
            Some(Box::new(move |r: &Req| {
                if r.path.starts_with("/token") {
                    return Some(token());
                }
                let me = r.header("Host").unwrap_or("");
                Some(Reply::Full(
                    401,
                    h(&[(
                        "WWW-Authenticate",
                        &format!(r#"Bearer realm="http://{me}/token",service="t""#),
                    )]),
                    vec![],
                ))
            })),
            ":1",
            expect,
        );
    }
    for (name, challenge, expect) in [
        (
            "realm file:///etc/passwd",
            r#"Bearer realm="file:///etc/passwd""#.to_string(),
            "token service",
        ),
        (
            "challenge header of 1 MiB",
            format!(
                r#"Bearer realm="http://127.0.0.1:1/{}""#,
                "a".repeat(1 << 20)
            ),
            "header|Header",
        ),
    ] {
        add(
            name,
            repo.clone(),
            Some(Box::new(move |_: &Req| {
                Some(Reply::Full(
                    401,
                    h(&[("WWW-Authenticate", &challenge)]),
                    vec![],
                ))
            })),
            ":1",
            expect,
        );
    }
    add(
        "token accepted, then 401 again",
        repo.clone(),
        Some(Box::new(|r: &Req| {
            if r.path.starts_with("/token") {
                return Some(Reply::Full(200, h(&[]), br#"{"token":"t"}"#.to_vec()));
            }
            let me = r.header("Host").unwrap_or("");
            Some(Reply::Full(
                401,
                h(&[(
                    "WWW-Authenticate",
                    &format!(r#"Bearer realm="http://{me}/token""#),
                )]),
                vec![],
            ))
        })),
        ":1",
        "refused the credentials",
    );

    let n = cases.len();
    let mut report = Vec::new();
    let mut redirect_loop_requests = 0;
    for c in cases {
        let Case {
            name,
            repo,
            hook,
            pull,
            expect,
        } = c;
        let server = Server::start(move |r| {
            if let Some(h) = &hook {
                if let Some(reply) = h(r) {
                    return reply;
                }
            }
            repo.answer(r)
        });
        let reference = format!("{}/x{pull}", server.host());
        let (err, took) = base.refused(&e, name, &["pull", &reference], expect, LIMIT);
        if name == "blob redirect loop" {
            redirect_loop_requests = server.requests().len();
        }
        if name == "index entry with an md5 digest" {
            let log = server.requests();
            assert!(
                log.iter().all(|l| !l.contains("md5:")),
                "{name}: fetched: {log:?}"
            );
        }
        if name == "error message with a newline and an escape" {
            assert!(!err.contains('\x1b'), "{name}: {err:?}");
        }
        report.push(format!("{name} ({} ms): {err}", took.as_millis()));
    }
    assert!(
        (2..=10).contains(&redirect_loop_requests),
        "the redirect loop took {redirect_loop_requests} requests"
    );
    for r in &report {
        eprintln!("{r}");
    }
    eprintln!("{n} hostile registries refused, store and canary unchanged");
    // The good image is untouched and still runs.
    assert_eq!(
        e.ok(&[
            "run",
            "--rm",
            &format!("{}/x:good", _good.host()),
            "echo",
            "ok"
        ]),
        "ok\n"
    );
}

#[test]
fn silent_and_dripping_registries_time_out() {
    let e = Env::new();
    let _good = store_with_good_image(&e);
    let base = Baseline::take(&e);
    let mut repo = Repo::default();
    let big = tar_raw(&[file("etc/big", &[9u8; 300_000])]);
    add_image(&mut repo, "1", std::slice::from_ref(&big));
    let gz = gzip(&big);
    let ld = digest(&gz);
    type Hook = Box<dyn Fn(&Req) -> Option<Reply> + Send + Sync>;
    let cases: Vec<(&str, Hook, &str)> = vec![
        (
            "connection accepted, never answered",
            Box::new(|_: &Req| Some(Reply::Silent)),
            "no answer within 2 s",
        ),
        (
            "manifest dripping a byte every 300 ms",
            Box::new(|r: &Req| {
                r.path
                    .contains("/manifests/")
                    .then(|| Reply::Drip(h(&[("Content-Type", OCI_MANIFEST)]), 4000, b"{".to_vec()))
            }),
            "not received within 2 s",
        ),
        (
            "layer stalling half way",
            Box::new(move |r: &Req| {
                r.path
                    .contains(&format!("/blobs/{ld}"))
                    .then(|| Reply::Stall(h(&[]), gz.len() as u64, gz[..gz.len() / 2].to_vec()))
            }),
            "sent nothing for 2 s",
        ),
        (
            "token service never answering",
            Box::new(|r: &Req| {
                if r.path.starts_with("/token") {
                    return Some(Reply::Silent);
                }
                let me = r.header("Host").unwrap_or("");
                Some(Reply::Full(
                    401,
                    h(&[(
                        "WWW-Authenticate",
                        &format!(r#"Bearer realm="http://{me}/token""#),
                    )]),
                    vec![],
                ))
            }),
            "token service",
        ),
    ];
    for (name, hook, expect) in cases {
        let repo = repo.clone();
        let server = Server::start(move |r| hook(r).unwrap_or_else(|| repo.answer(r)));
        let reference = format!("{}/x:1", server.host());
        let (err, took) = base.refused(
            &e,
            name,
            &["pull", "--timeout", "2", &reference],
            expect,
            LIMIT,
        );
        assert!(
            took < Duration::from_secs(15),
            "{name}: took {took:?}: {err}"
        );
        eprintln!("{name} ({} ms): {err}", took.as_millis());
    }
    // The default bounds a stall too (not waited for here).
    let (out, _) = e.strata(&["pull", "--help"], LIMIT);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--timeout") && help.contains("[default: 60]"),
        "{help}"
    );
}

/// A gzip stream of a tar holding one file of `size` zero bytes (multi-member: one member
/// of 1 MiB of zeros repeated), built without holding the uncompressed tar.
struct ZeroBomb {
    size: u64,
}

impl ZeroBomb {
    fn header(&self) -> Vec<u8> {
        let mut hd = tar::Header::new_gnu();
        hd.set_path("zero").unwrap();
        hd.set_size(self.size);
        hd.set_mode(0o644);
        hd.set_mtime(1_700_000_000);
        hd.set_uid(0);
        hd.set_gid(0);
        hd.set_cksum();
        hd.as_bytes().to_vec()
    }

    /// The compressed blob, as (prefix, repeated member, count, suffix).
    fn parts(&self) -> (Vec<u8>, Vec<u8>, u64, Vec<u8>) {
        let mib = 1u64 << 20;
        assert_eq!(self.size % mib, 0);
        (
            gzip(&self.header()),
            gzip(&vec![0u8; mib as usize]),
            self.size / mib,
            gzip(&[0u8; 1024]),
        )
    }

    fn compressed_len(&self) -> u64 {
        let (p, m, n, s) = self.parts();
        p.len() as u64 + m.len() as u64 * n + s.len() as u64
    }

    fn reader(&self) -> impl Read + Send {
        let (p, m, n, s) = self.parts();
        std::io::Cursor::new(p)
            .chain(Repeat {
                data: m,
                left: n,
                pos: 0,
            })
            .chain(std::io::Cursor::new(s))
    }

    /// sha256 of the compressed blob and of the uncompressed tar.
    fn digests(&self) -> (String, String) {
        let mut c = sha2::Sha256::new();
        std::io::copy(&mut self.reader(), &mut HashW(&mut c)).unwrap();
        let mut u = sha2::Sha256::new();
        u.update(self.header());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..self.size >> 20 {
            u.update(&zeros);
        }
        u.update([0u8; 1024]);
        let hex = |d: sha2::Sha256| {
            d.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        (format!("sha256:{}", hex(c)), format!("sha256:{}", hex(u)))
    }
}

struct Repeat {
    data: Vec<u8>,
    left: u64,
    pos: usize,
}

impl Read for Repeat {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.data.len() {
            self.pos = 0;
            self.left -= 1;
        }
        Ok(n)
    }
}

struct HashW<'a>(&'a mut sha2::Sha256);

impl Write for HashW<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn disk_used(p: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-s", "-B1"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0)
}

#[test]
fn gzip_bomb_layer_does_not_fill_the_disk() {
    let e = Env::new();
    let bomb = Arc::new(ZeroBomb { size: 10 << 30 });
    let (blob_digest, diff_id) = bomb.digests();
    let blob_len = bomb.compressed_len();
    let mut repo = Repo::default();
    let cfg = config_json(std::slice::from_ref(&diff_id));
    let cl = cfg.len() as u64;
    let c = desc(OCI_CONFIG, &repo.blob(cfg), cl);
    let l = desc(LAYER_GZIP, &blob_digest, blob_len);
    repo.manifest("bomb", OCI_MANIFEST, manifest_json(&c, &[l]));
    let b2 = bomb.clone();
    let server = Server::start(move |r| {
        if r.path.ends_with(&blob_digest) {
            return Reply::Stream(h(&[]), blob_len, Box::new(b2.reader()));
        }
        repo.answer(r)
    });
    // The peak matters too: a pull that fills the disk and then cleans up is no better.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (stop, peak, store) = (stop.clone(), peak.clone(), e.store());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(disk_used(&store) as usize, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let start = Instant::now();
    let (out, _) = e.strata(
        &["pull", &format!("{}/x:bomb", server.host())],
        Duration::from_secs(300),
    );
    let took = start.elapsed();
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let used = disk_used(&e.store());
    let peak = peak.load(Ordering::SeqCst) as u64;
    eprintln!(
        "10 GiB of zeros in a {blob_len}-byte layer: exit {:?} in {took:?}, store {used} bytes, peak {peak} bytes; {}",
        out.status.code(),
        err.trim()
    );
    // Accepted, as docker accepts it: the file is all there, as holes.
    assert!(out.status.success(), "{err}");
    assert!(used < 64 << 20, "the store uses {used} bytes");
    assert!(peak < 64 << 20, "the store used up to {peak} bytes");
    let layer = std::fs::read_dir(e.store().join("layers"))
        .unwrap()
        .flatten()
        .map(|x| x.path())
        .find(|p| p.is_dir())
        .unwrap();
    assert_eq!(layer.join("zero").metadata().unwrap().len(), 10 << 30);
}
