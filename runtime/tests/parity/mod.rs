//! The store and busybox image shared by the docker-parity tests (run_flags, pid1, volumes,
//! log_streams): a private store with `busybox` imported, its /data holding a file, as an
//! image VOLUME would.
#![allow(dead_code)]

use crate::common::{install_busybox, strata_bin};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A private store with a busybox image imported as `busybox` (and `withvol`, the same
/// with `VOLUME /data`).
pub struct Env {
    pub dir: PathBuf,
}

impl Env {
    pub fn new(tag: &str) -> Env {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests run containers and need root"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("strata-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        for d in ["bin", "etc", "tmp", "root", "data/sub"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        install_busybox(&rootfs.join("bin"));
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nwheel:x:10:\n").unwrap();
        std::fs::write(rootfs.join("data/seed"), "from the image\n").unwrap();
        std::fs::write(rootfs.join("data/sub/deep"), "deep\n").unwrap();
        let tar = dir.join("busybox.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let env = Env { dir };
        let t = tar.to_str().unwrap();
        env.ok(&["import", t, "busybox", "--change", r#"CMD ["/bin/sh"]"#]);
        env.ok(&[
            "import",
            t,
            "withvol",
            "--change",
            r#"CMD ["/bin/sh"]"#,
            "--change",
            "VOLUME /data",
        ]);
        env
    }

    pub fn root(&self) -> PathBuf {
        self.dir.join("store")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(strata_bin());
        c.arg("--root").arg(self.root()).args(args);
        c
    }

    pub fn strata(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Run and expect success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.strata(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `strata ARGS`: (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.strata(args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Expect failure; stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.strata(args);
        assert!(!out.status.success(), "strata {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `strata inspect NAME`, the one object.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0].clone()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = self.strata(&["ps", "-a", "-q"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.strata(&["rm", "-f", "-v", id]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Poll `f` every 20 ms for up to 20 s.
pub fn poll(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
