//! Hostile input to the image store, beyond runtime/tests/transfer/: archives for
//! `strata import` and `strata load` that try to escape the store (`..`, absolute names,
//! symlink-then-write-through, hard links out), device nodes and setuid files (rootful and
//! rootless), a sparse 10 GiB entry, invalid and truncated headers, truncated gzip and zstd,
//! bad digests; corrupt metadata in the store; image references found by the fuzzers.
//!
//! Each refused input must give a one-line error, write nothing outside the store (a canary
//! directory beside it, named by the archives, stays byte-for-byte the same) and leave the
//! store byte-for-byte unchanged (every path with its type, mode, size and sha256).
//! Real binary, no mocks. Rootful (the rootless case switches to an unprivileged user).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
use common::{as_user, ensure_user, sha, snapshot, strata_bin};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod corrupt_index;
mod corrupt_state;
mod imports;
mod loads;
mod references;
mod tars;
use corrupt_state::*;
use loads::*;
use tars::*;

/// A private directory: the store `s`, a canary directory beside it, inputs.
struct Env {
    dir: PathBuf,
}

impl Env {
    fn new() -> Env {
        assert!(nix::unistd::geteuid().is_root(), "these tests need root");
        let dir = common::fresh_dir("strata-hostile");
        std::fs::create_dir_all(dir.join("canary")).unwrap();
        std::fs::write(dir.join("canary/secret"), "canary\n").unwrap();
        std::fs::create_dir_all(dir.join("in")).unwrap();
        Env { dir }
    }

    fn store(&self) -> PathBuf {
        self.dir.join("s")
    }

    fn canary(&self) -> PathBuf {
        self.dir.join("canary")
    }

    fn strata(&self, args: &[&str]) -> Output {
        Command::new(strata_bin())
            .arg("--root")
            .arg(self.store())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        common::expect_ok(args, self.strata(args))
    }

    /// Expect failure with a one-line error; the error.
    fn fails(&self, what: &str, args: &[&str]) -> String {
        let out = self.strata(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "{what}: strata {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err:?}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        err
    }

    fn input(&self, name: &str, data: &[u8]) -> PathBuf {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let p = self.dir.join("in").join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    /// A busybox image tar (Debian's busybox-static).
    fn busybox_tar(&self, extra: &str) -> PathBuf {
        let rootfs = self.dir.join(format!("rootfs-{extra}"));
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        let bb = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox is missing: run scripts/setup");
        std::fs::copy(bb, rootfs.join("bin/busybox")).unwrap();
        for a in ["sh", "echo", "cat"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        std::fs::write(rootfs.join(extra), extra).unwrap();
        let tar = self.dir.join(format!("bb-{extra}.tar"));
        common::tar_dir(&rootfs, &tar);
        tar
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+rwx")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
