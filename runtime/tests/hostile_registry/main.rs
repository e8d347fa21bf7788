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

mod bombs;
mod hostile;
mod images;
mod pulls;
mod server;
use images::*;
use server::*;

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha(data))
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// A private directory: the store `s`, a canary directory beside it, strata's working
/// directory `cwd`.
struct Env {
    dir: PathBuf,
}

impl Env {
    fn new() -> Env {
        assert!(nix::unistd::geteuid().is_root(), "these tests need root");
        let dir = common::fresh_dir("strata-hreg");
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
