//! End-to-end tests: real containers from a busybox image (Debian's busybox-static), driven
//! through the strata binary (STRATA_BIN or <workspace>/target/debug/strata). Rootful.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
use common::{as_user, ensure_user, install_busybox, strata_bin};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod basics;
mod images;
mod lifecycle;
mod rootless;
use lifecycle::*;

/// A private store with a busybox image imported as `busybox`.
struct Env {
    dir: PathBuf,
}

impl Env {
    fn new() -> Env {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests run containers and need root"
        );
        let dir = common::fresh_dir("strata-rt");
        let rootfs = dir.join("rootfs");
        for d in ["bin", "etc", "tmp", "root", "home/bob"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        install_busybox(&rootfs.join("bin"));
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000:bob:/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\nbob:x:1000:\nwheel:x:10:bob\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("etc/keep"), "original\n").unwrap();
        std::fs::write(rootfs.join("etc/motd"), "motd text\n").unwrap();
        std::fs::write(rootfs.join("home/bob/.profile"), "export X=1\n").unwrap();
        let tar = dir.join("busybox.tar");
        common::tar_dir(&rootfs, &tar);
        let env = Env { dir };
        let out = env.strata(&[
            "import",
            tar.to_str().unwrap(),
            "busybox",
            "--change",
            r#"CMD ["/bin/sh"]"#,
        ]);
        assert!(
            out.status.success(),
            "import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        env
    }

    fn root(&self) -> PathBuf {
        self.dir.join("store")
    }

    fn strata(&self, args: &[&str]) -> Output {
        Command::new(strata_bin())
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Run and expect success; stdout.
    fn ok(&self, args: &[&str]) -> String {
        common::expect_ok(args, self.strata(args))
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        let out = self.strata(&a);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = self.strata(&["ps", "-a", "-q"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.strata(&["rm", "-f", id]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn poll(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
