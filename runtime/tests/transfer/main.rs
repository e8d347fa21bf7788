//! Images in and out: strata load/save against podman and skopeo, pull/push against Debian's
//! docker-registry on 127.0.0.1, and hostile archives. Real tools, no mocks; each test has its
//! own store, podman storage and registry, so tests run in parallel. Rootful (containers run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
use common::{check, need, podman_in, strata_at, strata_bin};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

mod hostile_archives;
mod podman;
mod registry;

/// Unique names within a test (copies of a layout).
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
        let dir = common::fresh_dir("strata-tx");
        std::fs::create_dir_all(&dir).unwrap();
        Env { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    fn strata_in(&self, store: &str, args: &[&str]) -> Output {
        strata_at(&self.path(store), args)
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
        podman_in(&self.dir, args)
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
        common::tar_dir(&rootfs, &tar);
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
