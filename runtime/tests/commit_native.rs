//! Native commit (issue 14): a fuse container's upper becomes the image's new layer as it
//! is. A 4 KiB write into a 1 GiB lower file commits in kilobytes and reads back right on
//! both drivers; renames of lower files and directories, hard links, whiteouts, opaque
//! directories and deltas over deltas read back right through three levels of commits;
//! save/push write plain OCI layers that podman, skopeo and a registry read back with the
//! same content. Real containers, podman, skopeo and Debian's docker-registry. Rootful.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{check, install_busybox, need, podman_in, strata_at};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use strata_tests::delta::chain_files;

/// A private directory with strata stores (by name) and a podman storage.
struct Env {
    dir: PathBuf,
}

impl Env {
    fn new() -> Env {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests run containers and need root"
        );
        let dir = common::fresh_dir("strata-cn");
        std::fs::create_dir_all(&dir).unwrap();
        Env { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    fn strata(&self, store: &str, args: &[&str]) -> Output {
        strata_at(&self.path(store), args)
    }

    fn ok(&self, store: &str, args: &[&str]) -> String {
        check(&self.strata(store, args), &format!("strata {args:?}"))
    }

    fn podman(&self, args: &[&str]) -> String {
        check(&podman_in(&self.dir, args), &format!("podman {args:?}"))
    }

    /// Import `rootfs` (busybox is added) as image `name` into store `store`.
    fn import(&self, store: &str, rootfs: &Path, name: &str) {
        install_busybox(&rootfs.join("bin"));
        for d in ["etc", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
        let tar = self.path(&format!("{name}.tar"));
        common::tar_dir(rootfs, &tar);
        self.ok(store, &["import", tar.to_str().unwrap(), name]);
        std::fs::remove_file(&tar).unwrap();
    }

    /// Disk blocks used by a store, KiB.
    fn du(&self, store: &str) -> u64 {
        let out = Command::new("du")
            .args(["-skx"])
            .arg(self.path(store))
            .output()
            .unwrap();
        let s = check(&out, "du");
        s.split_whitespace().next().unwrap().parse().unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for store in ["s", "loaded", "pulled"] {
            let ids = self.strata(store, &["ps", "-a", "-q"]);
            for id in String::from_utf8_lossy(&ids.stdout).lines() {
                let _ = self.strata(store, &["rm", "-f", id]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sha256sum(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    check(&out, "sha256sum")[..64].to_string()
}

/// `yes WORD | head -c LEN`.
fn yes(word: &str, len: usize) -> Vec<u8> {
    format!("{word}\n").bytes().cycle().take(len).collect()
}

#[test]
fn four_kib_into_a_gib_commits_in_kilobytes_and_reads_back_on_both_drivers() {
    let e = Env::new();
    let rootfs = e.path("rootfs");
    std::fs::create_dir_all(rootfs.join("t")).unwrap();
    let big = rootfs.join("t/big");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(1 << 30).unwrap();
    f.write_all_at(b"hello", 1000).unwrap();
    f.write_all_at(&yes("mid", 8192), 512 << 20).unwrap();
    drop(f);
    // The expected file: the lower one with the container's write.
    let want = e.path("want");
    let st = Command::new("cp")
        .args(["--sparse=always"])
        .arg(&big)
        .arg(&want)
        .status()
        .unwrap();
    assert!(st.success());
    let block = yes("abcd", 4096);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&want)
        .unwrap()
        .write_all_at(&block, 1000 * 4096)
        .unwrap();
    let want_big = sha256sum(&want);
    let new = yes("new64", 65536);
    let want_new = common::sha(&new);
    e.import("s", &rootfs, "gib");
    std::fs::remove_dir_all(&rootfs).unwrap();

    e.ok(
        "s",
        &[
            "run",
            "--name",
            "c",
            "--driver",
            "fuse",
            "gib",
            "sh",
            "-c",
            "yes new64 | head -c 65536 > /t/new && \
             yes abcd | head -c 4096 | dd of=/t/big bs=4096 seek=1000 conv=notrunc 2>/dev/null",
        ],
    );
    let before = e.du("s");
    let id = e.ok("s", &["commit", "c", "gib2"]);
    assert!(id.starts_with("sha256:"), "{id}");
    let grown = e.du("s") - before;
    assert!(
        grown < 1024,
        "the commit of a 4 KiB write into a 1 GiB file grew the store by {grown} KiB"
    );
    // The layer is native: its local id is not its (plain) diff_id.
    let inspect: serde_json::Value =
        serde_json::from_str(&e.ok("s", &["inspect", "gib2"])).unwrap();
    let layers = inspect[0]["GraphDriver"]["Data"]["Layers"]
        .as_array()
        .unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["Native"], false);
    assert_eq!(layers[1]["Native"], true);
    assert_ne!(layers[1]["LocalId"], layers[1]["DiffID"]);
    assert_eq!(inspect[0]["RootFS"]["Layers"][1], layers[1]["DiffID"]);
    // The container is still there, unchanged (docker semantics).
    assert!(e.ok("s", &["diff", "c"]).contains("A /t/new"));
    let sums = format!("{want_big}  /t/big\n{want_new}  /t/new\n");
    for driver in ["fuse", "overlay"] {
        let out = e.ok(
            "s",
            &[
                "run",
                "--rm",
                "--driver",
                driver,
                "gib2",
                "sha256sum",
                "/t/big",
                "/t/new",
            ],
        );
        assert_eq!(out, sums, "run from the commit on {driver}");
    }
    // auto picks the fuse driver for an image with native layers.
    e.ok("s", &["run", "--name", "a", "gib2", "true"]);
    let a: serde_json::Value = serde_json::from_str(&e.ok("s", &["inspect", "a"])).unwrap();
    assert_eq!(a[0]["GraphDriver"]["Name"], "fuse", "{a}");
    e.ok("s", &["fsck", "--image", "gib2"]);
}

/// A listing of /t in the container: type, mode, link count, size and content hash of each
/// entry (what a commit must keep).
const SNAPSHOT: &str = "cd /t && find . | sort | while read f; do \
     if [ -L \"$f\" ]; then echo \"$f L $(readlink \"$f\")\"; \
     elif [ -d \"$f\" ]; then echo \"$f D $(stat -c %a \"$f\")\"; \
     else echo \"$f F $(stat -c '%a %h %s' \"$f\") $(sha256sum < \"$f\" | cut -c1-16)\"; fi; done";

/// Three levels of changes: each runs in a container from the previous commit.
const LEVELS: [&str; 3] = [
    "echo new > newfile && yes n64 | head -c 65536 > new64 && \
     printf level1 | dd of=mid bs=4096 seek=100 conv=notrunc 2>/dev/null && \
     mv mv_me moved && mv dir dir_moved && ln link_me linked && rm rm_me && \
     rm -rf opq && mkdir opq && echo z > opq/z && chmod 600 keep && ln -s moved sym",
    "printf level2 | dd of=mid bs=4096 seek=200 conv=notrunc 2>/dev/null && \
     mv dir_moved dir_again && echo more >> moved && ln moved moved_link && rm newfile && \
     mkdir -p dir_again/new && echo n > dir_again/new/f && chmod 640 dir_again/a",
    "printf level3 | dd of=mid bs=4096 seek=100 conv=notrunc 2>/dev/null && \
     rm -rf opq && mv dir_again/sub dir_again/sub2 && echo l3 >> linked && \
     truncate -s 3000000 mid",
];

/// Debian's docker-registry on 127.0.0.1 with a free port; killed on drop.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        need("docker-registry");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        let cfg_path = dir.join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("registry.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("registry.err")).unwrap())
            .spawn()
            .unwrap();
        let r = Registry { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn snapshot_in(e: &Env, store: &str, driver: &str, image: &str) -> String {
    e.ok(
        store,
        &[
            "run", "--rm", "--driver", driver, image, "sh", "-c", SNAPSHOT,
        ],
    )
}

#[test]
fn three_levels_of_commits_then_save_load_push_pull() {
    for t in ["podman", "skopeo", "runc"] {
        need(t);
    }
    let e = Env::new();
    let rootfs = e.path("rootfs");
    let t = rootfs.join("t");
    for d in ["dir/sub", "opq"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    for (f, c) in [
        ("keep", "keep\n"),
        ("mv_me", "moving\n"),
        ("link_me", "linked\n"),
        ("rm_me", "gone\n"),
        ("dir/a", "a\n"),
        ("dir/sub/b", "b\n"),
        ("opq/x", "x\n"),
        ("opq/y", "y\n"),
    ] {
        std::fs::write(t.join(f), c).unwrap();
    }
    // 4 MiB: above the delta threshold, so each level's write is a block delta.
    std::fs::write(t.join("mid"), yes("mid", 4 << 20)).unwrap();
    e.import("s", &rootfs, "base");

    let mut image = "base".to_string();
    let mut want = String::new();
    for (i, script) in LEVELS.iter().enumerate() {
        let name = format!("c{i}");
        let cmd = format!("set -e; cd /t; {script}; {SNAPSHOT}");
        want = e.ok(
            "s",
            &[
                "run", "--name", &name, "--driver", "fuse", &image, "sh", "-c", &cmd,
            ],
        );
        let next = format!("lvl{}", i + 1);
        e.ok("s", &["commit", &name, &next]);
        image = next;
        assert_eq!(
            snapshot_in(&e, "s", "fuse", &image),
            want,
            "level {} read back on the fuse driver",
            i + 1
        );
        e.ok("s", &["fsck", "--image", &image]);
    }
    assert!(want.contains("./dir_again/sub2 D"), "{want}");
    assert!(!want.contains("./opq"), "{want}");
    assert_eq!(snapshot_in(&e, "s", "overlay", &image), want, "overlay");
    let inspect: serde_json::Value =
        serde_json::from_str(&e.ok("s", &["inspect", &image])).unwrap();
    let diff_ids = inspect[0]["RootFS"]["Layers"].clone();
    assert_eq!(diff_ids.as_array().unwrap().len(), 4);

    // save: a docker archive podman loads and runs, skopeo reads; the ids are stable.
    let archive = e.path("lvl3.tar");
    e.ok("s", &["save", "-o", archive.to_str().unwrap(), &image]);
    let again = e.path("lvl3-again.tar");
    e.ok("s", &["save", "-o", again.to_str().unwrap(), &image]);
    assert_eq!(
        sha256sum(&archive),
        sha256sum(&again),
        "save is byte-stable"
    );
    let skopeo: serde_json::Value = serde_json::from_str(&check(
        &Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", archive.display()))
            .output()
            .unwrap(),
        "skopeo inspect",
    ))
    .unwrap();
    assert_eq!(skopeo["Layers"], diff_ids, "skopeo sees the plain diff_ids");
    e.podman(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let podman_view = e.podman(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "localhost/lvl3:latest",
        "sh",
        "-c",
        SNAPSHOT,
    ]);
    assert_eq!(podman_view, want, "podman runs the saved image");
    // skopeo copies it to an OCI layout, which strata loads as plain layers.
    let layout = e.path("layout");
    check(
        &Command::new("skopeo")
            .arg("copy")
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("oci:{}:lvl3", layout.display()))
            .output()
            .unwrap(),
        "skopeo copy",
    );
    let out = e.ok("loaded", &["load", "-i", layout.to_str().unwrap()]);
    let loaded = out
        .lines()
        .find_map(|l| l.rsplit_once('(').map(|(_, id)| id.trim_end_matches(')')))
        .or_else(|| {
            out.lines()
                .find_map(|l| l.strip_prefix("Loaded image ID: "))
        })
        .unwrap_or_else(|| panic!("no image id in {out}"))
        .to_string();
    assert_eq!(snapshot_in(&e, "loaded", "overlay", &loaded), want);
    let li: serde_json::Value =
        serde_json::from_str(&e.ok("loaded", &["inspect", &loaded])).unwrap();
    assert_eq!(li[0]["RootFS"]["Layers"], diff_ids);
    for l in li[0]["GraphDriver"]["Data"]["Layers"].as_array().unwrap() {
        assert_eq!(l["Native"], false, "a loaded layer is plain: {l}");
    }

    // push to a registry on 127.0.0.1, pull into a fresh store.
    let reg = Registry::start(&e.path("registry"));
    let target = format!("127.0.0.1:{}/t/lvl3:1", reg.port);
    e.ok("s", &["push", &image, &target]);
    e.ok("pulled", &["pull", &target]);
    assert_eq!(snapshot_in(&e, "pulled", "fuse", &target), want, "pulled");
    let pi: serde_json::Value =
        serde_json::from_str(&e.ok("pulled", &["inspect", &target])).unwrap();
    assert_eq!(pi[0]["RootFS"]["Layers"], diff_ids);
}

/// Eight commits in a row, each of a 4 KiB write into the same 2 MiB file: the layers'
/// deltas chain up, and a commit never stores a chain of more than 6 files (it flattens
/// the new layer's delta); every commit reads the right bytes.
#[test]
fn commits_of_commits_keep_delta_chains_short() {
    let e = Env::new();
    let rootfs = e.path("rootfs");
    std::fs::create_dir_all(rootfs.join("t")).unwrap();
    let mut want = yes("base", 2 << 20);
    std::fs::write(rootfs.join("t/f"), &want).unwrap();
    e.import("s", &rootfs, "c0");
    let mut deepest = 0;
    for level in 1..=8usize {
        let script = format!(
            "yes l{level} | head -c 4096 | dd of=/t/f bs=4096 seek={} conv=notrunc 2>/dev/null",
            level * 5
        );
        let (from, to) = (format!("c{}", level - 1), format!("c{level}"));
        e.ok(
            "s",
            &[
                "run", "--name", "w", "--driver", "fuse", &from, "sh", "-c", &script,
            ],
        );
        e.ok("s", &["commit", "w", &to]);
        e.ok("s", &["rm", "w"]);
        let off = level * 5 * 4096;
        want[off..off + 4096].copy_from_slice(&yes(&format!("l{level}"), 4096));
        let inspect: serde_json::Value =
            serde_json::from_str(&e.ok("s", &["inspect", &to])).unwrap();
        let mut dirs: Vec<PathBuf> = inspect[0]["GraphDriver"]["Data"]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| PathBuf::from(l["Dir"].as_str().unwrap()))
            .collect();
        dirs.reverse();
        let n = chain_files(&dirs, "t/f");
        deepest = deepest.max(n);
        assert!(n <= 6, "commit {to}: t/f's bytes come from {n} files");
        let got = e.ok(
            "s",
            &["run", "--rm", "--driver", "fuse", &to, "sha256sum", "/t/f"],
        );
        assert_eq!(&got[..64], common::sha(&want), "commit {to} reads wrong");
    }
    assert_eq!(
        deepest, 6,
        "the chain should reach the bound before being flattened"
    );
    e.ok("s", &["fsck", "--image", "c8"]);
}
