//! Images in and out: strata load/save against podman and skopeo, pull/push against Debian's
//! docker-registry on 127.0.0.1, and hostile archives. Real tools, no mocks; each test has its
//! own store, podman storage and registry, so tests run in parallel. Rootful (containers run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
use common::strata_bin;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn need(tool: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{tool} is missing: run scripts/setup");
}

fn check(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A private directory with a strata store and a podman storage, removed on drop.
struct Env {
    dir: PathBuf,
}

impl Env {
    fn new() -> Env {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests run containers and need root"
        );
        for t in ["podman", "skopeo", "runc", "tar"] {
            need(t);
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("strata-tx-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Env { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    fn strata_in(&self, store: &str, args: &[&str]) -> Output {
        Command::new(strata_bin())
            .arg("--root")
            .arg(self.path(store))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// strata in `store`, expecting success; stdout.
    fn ok(&self, store: &str, args: &[&str]) -> String {
        check(&self.strata_in(store, args), &format!("strata {args:?}"))
    }

    /// strata in `store`, expecting failure; stderr.
    fn fails(&self, store: &str, args: &[&str]) -> String {
        let out = self.strata_in(store, args);
        assert!(
            !out.status.success(),
            "strata {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn podman(&self, args: &[&str]) -> Output {
        Command::new("podman")
            .arg("--root")
            .arg(self.path("podman/root"))
            .arg("--runroot")
            .arg(self.path("podman/run"))
            .args([
                "--storage-driver",
                "vfs",
                "--events-backend",
                "file",
                "--runtime",
                "runc",
                "--cgroup-manager",
                "cgroupfs",
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn podman_ok(&self, args: &[&str]) -> String {
        check(&self.podman(args), &format!("podman {args:?}"))
    }

    fn podman_run(&self, image: &str, cmd: &[&str]) -> String {
        let mut a = vec![
            "run",
            "--rm",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            image,
        ];
        a.extend_from_slice(cmd);
        self.podman_ok(&a)
    }

    /// A busybox rootfs tar (Debian's busybox-static).
    fn busybox_tar(&self) -> PathBuf {
        let rootfs = self.path("rootfs");
        for d in ["bin", "etc", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        let bb = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox is missing: run scripts/setup");
        std::fs::copy(bb, rootfs.join("bin/busybox")).unwrap();
        for a in ["sh", "echo", "cat", "ls", "true"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
        let tar = self.path("busybox.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        tar
    }

    /// In podman: `localhost/bb:latest` (one layer) and `localhost/app:1` (bb plus two COPY
    /// layers), and `localhost/app2:1` (bb plus one other layer) when `two`.
    fn podman_images(&self, two: bool) {
        let tar = self.busybox_tar();
        self.podman_ok(&["import", "-q", tar.to_str().unwrap(), "localhost/bb:latest"]);
        let ctx = self.path("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("hello"), "hello from a layer\n").unwrap();
        std::fs::write(ctx.join("two"), "second layer\n").unwrap();
        std::fs::write(ctx.join("other"), "another image\n").unwrap();
        std::fs::write(
            ctx.join("Containerfile"),
            "FROM localhost/bb:latest\nCOPY hello /hello\nCOPY two /two\nCMD [\"/bin/sh\"]\n",
        )
        .unwrap();
        self.podman_ok(&[
            "build",
            "-q",
            "-t",
            "localhost/app:1",
            ctx.to_str().unwrap(),
        ]);
        if two {
            std::fs::write(
                ctx.join("Containerfile"),
                "FROM localhost/bb:latest\nCOPY other /other\n",
            )
            .unwrap();
            self.podman_ok(&[
                "build",
                "-q",
                "-t",
                "localhost/app2:1",
                ctx.to_str().unwrap(),
            ]);
        }
    }

    fn podman_id(&self, image: &str) -> String {
        self.podman_ok(&["image", "inspect", "--format", "{{.Id}}", image])
            .trim()
            .to_string()
    }

    /// Every path in a store with its size, to compare before and after a failure (the lock
    /// file is created by any command).
    fn listing(&self, store: &str) -> Vec<String> {
        let mut out = Vec::new();
        let root = self.path(store);
        let mut stack = vec![root.clone()];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                let m = e.path().symlink_metadata().unwrap();
                let rel = e.path().strip_prefix(&root).unwrap().display().to_string();
                if m.is_dir() {
                    stack.push(e.path());
                }
                out.push(format!("{rel} {}", if m.is_dir() { 0 } else { m.len() }));
            }
        }
        out.sort();
        out
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // podman's vfs layers may hold read-only directories.
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+rwx")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sha256_file(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

fn layer_count(env: &Env, store: &str) -> usize {
    std::fs::read_dir(env.path(store).join("layers"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .count()
}

#[test]
fn podman_archives_load_and_run() {
    let e = Env::new();
    e.podman_images(false);
    let id = e.podman_id("localhost/app:1");
    let d = e.path("app-docker.tar");
    let o = e.path("app-oci.tar");
    e.podman_ok(&["save", "-q", "-o", d.to_str().unwrap(), "localhost/app:1"]);
    e.podman_ok(&[
        "save",
        "-q",
        "--format",
        "oci-archive",
        "-o",
        o.to_str().unwrap(),
        "localhost/app:1",
    ]);
    // docker-archive into one store, OCI archive into another: same image id as podman's.
    let out = e.ok("s1", &["load", "-i", d.to_str().unwrap()]);
    assert!(out.contains("localhost/app:1"), "{out}");
    assert!(
        out.contains(&id),
        "image id differs from podman's {id}: {out}"
    );
    let out = e.ok("s2", &["load", "-i", o.to_str().unwrap()]);
    assert!(out.contains(&id), "{out}");
    for s in ["s1", "s2"] {
        assert_eq!(
            e.ok(s, &["run", "--rm", "localhost/app:1", "echo", "ok"]),
            "ok\n"
        );
        assert_eq!(
            e.ok(
                s,
                &["run", "--rm", "localhost/app:1", "cat", "/hello", "/two"]
            ),
            "hello from a layer\nsecond layer\n"
        );
        assert_eq!(layer_count(&e, s), 3);
    }
    // The other format into the same store: layers are not stored twice.
    e.ok("s1", &["load", "-i", o.to_str().unwrap()]);
    assert_eq!(layer_count(&e, "s1"), 3);
    // From stdin, compressed as a whole.
    let gz = e.path("app.tar.gz");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {}", d.display(), gz.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new(strata_bin())
        .arg("--root")
        .arg(e.path("s3"))
        .args(["load", "-q"])
        .stdin(std::fs::File::open(&gz).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        check(&out, "load from stdin").trim(),
        format!("sha256:{id}")
    );
}

#[test]
fn save_formats_read_by_podman_and_skopeo() {
    let e = Env::new();
    e.podman_images(false);
    let id = e.podman_id("localhost/app:1");
    let d = e.path("app-docker.tar");
    e.podman_ok(&["save", "-q", "-o", d.to_str().unwrap(), "localhost/app:1"]);
    e.ok("s", &["load", "-i", d.to_str().unwrap()]);
    let diff_ids = e.ok("s", &["inspect", "localhost/app:1"]);
    let da = e.path("out-docker.tar");
    let oa = e.path("out-oci.tar");
    let od = e.path("out-oci-dir");
    e.ok(
        "s",
        &["save", "-o", da.to_str().unwrap(), "localhost/app:1"],
    );
    e.ok(
        "s",
        &[
            "save",
            "--format",
            "oci-archive",
            "-o",
            oa.to_str().unwrap(),
            "localhost/app:1",
        ],
    );
    e.ok(
        "s",
        &[
            "save",
            "--format",
            "oci-dir",
            "-o",
            od.to_str().unwrap(),
            "localhost/app:1",
        ],
    );
    // Byte-stable: saving again gives the same archive.
    let again = e.path("again.tar");
    e.ok(
        "s",
        &["save", "-o", again.to_str().unwrap(), "localhost/app:1"],
    );
    assert_eq!(sha256_file(&da), sha256_file(&again));
    // skopeo reads all three, and sees the store's layers (diff_ids) unchanged.
    for src in [
        format!("docker-archive:{}", da.display()),
        format!("oci-archive:{}", oa.display()),
        format!("oci:{}", od.display()),
    ] {
        let out = check(
            &Command::new("skopeo")
                .args(["inspect", "--config", &src])
                .output()
                .unwrap(),
            &format!("skopeo inspect {src}"),
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        for d in v["rootfs"]["diff_ids"].as_array().unwrap() {
            assert!(diff_ids.contains(d.as_str().unwrap()), "{src}: {out}");
        }
        // And copies it whole (every blob verified by skopeo).
        let dest = e.path(&format!("copy-{}", COUNTER.fetch_add(1, Ordering::SeqCst)));
        check(
            &Command::new("skopeo")
                .args(["copy", "-q", &src, &format!("oci:{}:x", dest.display())])
                .output()
                .unwrap(),
            &format!("skopeo copy {src}"),
        );
    }
    // podman loads what strata wrote, with the same id, and runs it.
    for a in [&da, &oa] {
        e.podman_ok(&["rmi", "-a", "-f"]);
        let out = e.podman_ok(&["load", "-i", a.to_str().unwrap()]);
        assert!(out.contains("localhost/app:1"), "{out}");
        assert_eq!(
            e.podman_id("localhost/app:1"),
            id.trim_start_matches("sha256:")
        );
    }
    assert_eq!(
        e.podman_run("localhost/app:1", &["cat", "/two"]),
        "second layer\n"
    );
}

#[test]
fn skopeo_oci_layouts_with_gzip_and_zstd_layers() {
    need("zstd");
    let e = Env::new();
    e.podman_images(false);
    let d = e.path("app-docker.tar");
    e.podman_ok(&["save", "-q", "-o", d.to_str().unwrap(), "localhost/app:1"]);
    for fmt in ["gzip", "zstd"] {
        let layout = e.path(&format!("layout-{fmt}"));
        check(
            &Command::new("skopeo")
                .args([
                    "copy",
                    "-q",
                    "--dest-compress",
                    "--dest-compress-format",
                    fmt,
                    &format!("docker-archive:{}", d.display()),
                    &format!("oci:{}:localhost/app:{fmt}", layout.display()),
                ])
                .output()
                .unwrap(),
            "skopeo copy",
        );
        // The layout really holds compressed layers of that kind.
        let blobs = std::fs::read_dir(layout.join("blobs/sha256")).unwrap();
        let mut manifests = String::new();
        for b in blobs.flatten() {
            let bytes = std::fs::read(b.path()).unwrap();
            if bytes.first() == Some(&b'{') {
                manifests.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
        assert!(manifests.contains(&format!("tar+{fmt}")), "{manifests}");
        // As a directory, into one store.
        let store = format!("s-{fmt}");
        let out = e.ok(&store, &["load", "-i", layout.to_str().unwrap()]);
        assert!(out.contains(&format!("localhost/app:{fmt}")), "{out}");
        assert_eq!(
            e.ok(
                &store,
                &[
                    "run",
                    "--rm",
                    &format!("localhost/app:{fmt}"),
                    "cat",
                    "/two"
                ]
            ),
            "second layer\n"
        );
        // As a tar of the layout (an oci-archive), into another.
        let tar = e.path(&format!("layout-{fmt}.tar"));
        let st = Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let store2 = format!("t-{fmt}");
        e.ok(&store2, &["load", "-i", tar.to_str().unwrap()]);
        assert_eq!(
            e.ok(
                &store2,
                &["run", "--rm", &format!("localhost/app:{fmt}"), "echo", "ok"]
            ),
            "ok\n"
        );
    }
}

/// Debian's docker-registry on 127.0.0.1 with a free port and its own storage; killed on drop.
struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Registry {
    fn start(dir: &Path, htpasswd: Option<&Path>) -> Registry {
        need("docker-registry");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        if let Some(h) = htpasswd {
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                h.display()
            ));
        }
        let cfg_path = dir.join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = dir.join("registry.log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("registry.err")).unwrap())
            .spawn()
            .unwrap();
        let r = Registry { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not listen on 127.0.0.1:{port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many blob GETs the registry has served so far (from its access log).
    fn blob_gets(&self) -> usize {
        let err = self.log.with_file_name("registry.err");
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(err).unwrap_or_default());
        text.lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {out}"))
}

#[test]
fn registry_push_pull_mount_digest() {
    let e = Env::new();
    e.podman_images(true);
    let reg = Registry::start(&e.path("registry"), None);
    let host = reg.host();
    for (img, file) in [("app", "app.tar"), ("app2", "app2.tar")] {
        let p = e.path(file);
        e.podman_ok(&[
            "save",
            "-q",
            "-o",
            p.to_str().unwrap(),
            &format!("localhost/{img}:1"),
        ]);
        e.ok("src", &["load", "-i", p.to_str().unwrap()]);
    }
    // podman → strata → registry.
    let target = format!("{host}/team/app:1.2");
    let out = e.ok("src", &["push", "localhost/app:1", &target]);
    assert!(out.contains("3 layers, 3 uploaded"), "{out}");
    let digest = field(&out, "Digest: ").to_string();
    // Pushing again uploads nothing.
    let out = e.ok("src", &["push", "localhost/app:1", &target]);
    assert!(
        out.contains("0 uploaded") && out.contains("3 already present"),
        "{out}"
    );
    // An image sharing the base layer: that blob is skipped.
    let out = e.ok(
        "src",
        &["push", "localhost/app2:1", &format!("{host}/team/app2:1")],
    );
    assert!(out.contains("1 uploaded"), "{out}");
    assert!(
        out.contains("1 mounted") || out.contains("1 already present"),
        "{out}"
    );
    // Another repository of the same registry: blobs are mounted, not uploaded.
    let out = e.ok(
        "src",
        &["push", "localhost/app:1", &format!("{host}/other/app:1")],
    );
    assert!(
        out.contains("0 uploaded") && out.contains("3 mounted"),
        "{out}"
    );
    // registry → an empty store: every layer fetched, then runs.
    let before = reg.blob_gets();
    let out = e.ok("dst", &["pull", &target]);
    assert!(out.contains("3 fetched"), "{out}");
    assert!(out.contains(&digest), "{out}");
    assert_eq!(
        e.ok("dst", &["run", "--rm", &target, "cat", "/hello"]),
        "hello from a layer\n"
    );
    let after_first = reg.blob_gets();
    assert!(after_first >= before + 4, "config and 3 layers fetched");
    // Pulling again transfers no layer (only the small config blob is read).
    let out = e.ok("dst", &["pull", &target]);
    assert!(
        out.contains("0 fetched") && out.contains("3 already present"),
        "{out}"
    );
    assert_eq!(reg.blob_gets(), after_first + 1);
    // The second image fetches only its own layer.
    let out = e.ok("dst", &["pull", &format!("{host}/team/app2:1")]);
    assert!(
        out.contains("1 fetched") && out.contains("1 already present"),
        "{out}"
    );
    // By digest into yet another store (untagged), then run by id.
    let out = e.ok("bydigest", &["pull", &format!("{host}/team/app@{digest}")]);
    let id = field(&out, "Image: ").trim().to_string();
    assert!(id.starts_with("sha256:"), "{out}");
    assert_eq!(
        e.ok("bydigest", &["run", "--rm", &id, "echo", "ok"]),
        "ok\n"
    );
    // A digest that is not the manifest's is refused.
    let wrong = format!("{host}/team/app@sha256:{}", "0".repeat(64));
    let err = e.fails("bydigest", &["pull", &wrong]);
    assert!(err.contains("not found") || err.contains("digest"), "{err}");
    // registry → podman, and it runs there too.
    e.podman_ok(&["rmi", "-a", "-f"]);
    e.podman_ok(&["pull", "-q", "--tls-verify=false", &target]);
    assert_eq!(e.podman_run(&target, &["cat", "/two"]), "second layer\n");
    // skopeo agrees on the manifest digest.
    let out = check(
        &Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                &format!("docker://{target}"),
            ])
            .output()
            .unwrap(),
        "skopeo inspect",
    );
    assert!(out.contains(&digest), "{out}");
}

#[test]
fn registry_with_basic_auth() {
    need("htpasswd");
    let e = Env::new();
    e.podman_images(false);
    let htpasswd = e.path("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", "alice", "s3cret"])
        .output()
        .unwrap();
    std::fs::write(&htpasswd, check(&out, "htpasswd")).unwrap();
    let reg = Registry::start(&e.path("registry"), Some(&htpasswd));
    let target = format!("{}/secure/app:1", reg.host());
    let p = e.path("app.tar");
    e.podman_ok(&["save", "-q", "-o", p.to_str().unwrap(), "localhost/app:1"]);
    e.ok("src", &["load", "-i", p.to_str().unwrap()]);
    let err = e.fails("src", &["push", "localhost/app:1", &target]);
    assert!(
        err.contains("needs credentials") && err.contains("--creds"),
        "{err}"
    );
    let err = e.fails(
        "src",
        &["push", "--creds", "alice:wrong", "localhost/app:1", &target],
    );
    assert!(err.contains("refused the credentials"), "{err}");
    let out = e.ok(
        "src",
        &[
            "push",
            "--creds",
            "alice:s3cret",
            "localhost/app:1",
            &target,
        ],
    );
    assert!(out.contains("3 uploaded"), "{out}");
    let err = e.fails("dst", &["pull", &target]);
    assert!(err.contains("needs credentials"), "{err}");
    let out = e.ok("dst", &["pull", "--creds", "alice:s3cret", &target]);
    assert!(out.contains("3 fetched"), "{out}");
    assert_eq!(e.ok("dst", &["run", "--rm", &target, "echo", "ok"]), "ok\n");
    // Credentials from a docker config.json.
    let cfg = e.path("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#,
            reg.host()
        ),
    )
    .unwrap();
    let out = Command::new(strata_bin())
        .arg("--root")
        .arg(e.path("dst2"))
        .args(["pull", &target])
        .env("DOCKER_CONFIG", &cfg)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(check(&out, "pull with config.json").contains("3 fetched"));
}

// ---- hostile archives ----

fn tar_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; write the raw name for hostile entries.
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn sha(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn config_for(diff_ids: &[String]) -> Vec<u8> {
    let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"sha256:{d}\"")).collect();
    format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        ids.join(",")
    )
    .into_bytes()
}

/// A docker-archive (Docker ≥25 layout) holding `files` and a manifest.json.
fn docker_archive(path: &Path, manifest: &str, files: &[(String, Vec<u8>)]) {
    let mut entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    entries.push(("manifest.json", manifest.as_bytes()));
    std::fs::write(path, tar_bytes(&entries)).unwrap();
}

/// name, manifest.json, archive members, what the error must say.
type Case = (&'static str, String, Vec<(String, Vec<u8>)>, &'static str);

#[test]
fn hostile_archives_leave_the_store_unchanged() {
    let e = Env::new();
    // A store with one good image in it.
    let good_layer = tar_bytes(&[("etc/good", b"good\n")]);
    let good_hex = sha(&good_layer);
    let good_cfg = config_for(std::slice::from_ref(&good_hex));
    let good_cfg_hex = sha(&good_cfg);
    let good = e.path("good.tar");
    docker_archive(
        &good,
        &format!(
            r#"[{{"Config":"blobs/sha256/{good_cfg_hex}","RepoTags":["good:1"],"Layers":["blobs/sha256/{good_hex}"]}}]"#
        ),
        &[
            (format!("blobs/sha256/{good_cfg_hex}"), good_cfg.clone()),
            (format!("blobs/sha256/{good_hex}"), good_layer.clone()),
        ],
    );
    let out = e.ok("s", &["load", "-i", good.to_str().unwrap()]);
    assert!(out.contains("good:1"), "{out}");
    let before = e.listing("s");

    let new_layer = tar_bytes(&[("etc/new", b"new\n")]);
    let new_hex = sha(&new_layer);
    let cases: Vec<Case> = vec![
        {
            // The manifest names a layer blob that is not in the archive.
            let cfg = config_for(&[good_hex.clone(), new_hex.clone()]);
            let ch = sha(&cfg);
            (
                "missing blob",
                format!(
                    r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["bad:1"],"Layers":["blobs/sha256/{good_hex}","blobs/sha256/{new_hex}"]}}]"#
                ),
                vec![
                    (format!("blobs/sha256/{ch}"), cfg),
                    (format!("blobs/sha256/{good_hex}"), good_layer.clone()),
                ],
                "missing from the archive",
            )
        },
        {
            // A layer whose content is not what its name and the config say.
            let cfg = config_for(&[good_hex.clone(), new_hex.clone()]);
            let ch = sha(&cfg);
            let tampered = tar_bytes(&[("etc/new", b"evil\n")]);
            (
                "wrong digest",
                format!(
                    r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["bad:1"],"Layers":["blobs/sha256/{good_hex}","blobs/sha256/{new_hex}"]}}]"#
                ),
                vec![
                    (format!("blobs/sha256/{ch}"), cfg),
                    (format!("blobs/sha256/{good_hex}"), good_layer.clone()),
                    (format!("blobs/sha256/{new_hex}"), tampered),
                ],
                "digest",
            )
        },
        {
            // A config whose bytes do not hash to its name.
            let cfg = config_for(std::slice::from_ref(&good_hex));
            let ch = sha(b"something else");
            (
                "wrong config digest",
                format!(
                    r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["bad:1"],"Layers":["blobs/sha256/{good_hex}"]}}]"#
                ),
                vec![
                    (format!("blobs/sha256/{ch}"), cfg),
                    (format!("blobs/sha256/{good_hex}"), good_layer.clone()),
                ],
                "digest",
            )
        },
        {
            // A layer that writes outside its root.
            let evil = tar_bytes(&[("etc/ok", b"ok\n"), ("../../escape", b"x\n")]);
            let eh = sha(&evil);
            let cfg = config_for(std::slice::from_ref(&eh));
            let ch = sha(&cfg);
            (
                "../ paths",
                format!(
                    r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["bad:1"],"Layers":["blobs/sha256/{eh}"]}}]"#
                ),
                vec![
                    (format!("blobs/sha256/{ch}"), cfg),
                    (format!("blobs/sha256/{eh}"), evil),
                ],
                "escapes the root",
            )
        },
        {
            // A config whose diff_ids try to name a path.
            let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:../../../etc"]}}"#.to_vec();
            let ch = sha(&cfg);
            (
                "diff_id path",
                format!(
                    r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["bad:1"],"Layers":["blobs/sha256/{good_hex}"]}}]"#
                ),
                vec![
                    (format!("blobs/sha256/{ch}"), cfg),
                    (format!("blobs/sha256/{good_hex}"), good_layer.clone()),
                ],
                "malformed digest",
            )
        },
        {
            // manifest.json pointing outside the archive.
            (
                "manifest path escape",
                r#"[{"Config":"../../etc/passwd","RepoTags":["bad:1"],"Layers":[]}]"#.to_string(),
                vec![],
                "leaves the archive",
            )
        },
    ];
    for (name, manifest, files, expect) in cases {
        let p = e.path(&format!("{}.tar", name.replace(' ', "-")));
        docker_archive(&p, &manifest, &files);
        let err = e.fails("s", &["load", "-i", p.to_str().unwrap()]);
        assert!(err.contains(expect), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: one line: {err}");
        assert_eq!(e.listing("s"), before, "{name}: the store changed");
    }

    // OCI layouts: an index nesting itself deeper and deeper (a manifest loop), and a
    // manifest whose layer blob is missing.
    let layout = e.path("loop");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut child = format!("sha256:{}", "1".repeat(64));
    let mut size = 2;
    for _ in 0..8 {
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{child}","size":{size}}}]}}"#
        );
        let h = sha(idx.as_bytes());
        std::fs::write(layout.join("blobs/sha256").join(&h), &idx).unwrap();
        child = format!("sha256:{h}");
        size = idx.len();
    }
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{child}","size":{size}}}]}}"#
        ),
    )
    .unwrap();
    let err = e.fails("s", &["load", "-i", layout.to_str().unwrap()]);
    assert!(err.contains("manifest loop"), "{err}");
    assert_eq!(e.listing("s"), before);

    let layout = e.path("missing");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let cfg = config_for(std::slice::from_ref(&new_hex));
    let ch = sha(&cfg);
    std::fs::write(layout.join("blobs/sha256").join(&ch), &cfg).unwrap();
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{ch}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{new_hex}","size":{}}}]}}"#,
        cfg.len(),
        new_layer.len()
    );
    let mh = sha(m.as_bytes());
    std::fs::write(layout.join("blobs/sha256").join(&mh), &m).unwrap();
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{mh}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"bad:1"}}}}]}}"#,
            m.len()
        ),
    )
    .unwrap();
    let err = e.fails("s", &["load", "-i", layout.to_str().unwrap()]);
    assert!(err.contains("missing"), "{err}");
    assert_eq!(e.listing("s"), before);
    // The good image still runs its course: saved and loaded elsewhere, same id.
    let back = e.path("back.tar");
    e.ok("s", &["save", "-o", back.to_str().unwrap(), "good:1"]);
    let out = e.ok("s2", &["load", "-i", back.to_str().unwrap()]);
    assert!(out.contains(&good_cfg_hex), "{out}");
    let _ = std::io::stdout().flush();
}
