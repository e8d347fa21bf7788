//! A private store with a busybox image, for the tests of docker's commands and formats.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;
pub use common::{install_busybox, strata_bin};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A store under a fresh temporary directory with `busybox` imported (CMD /bin/sh).
pub struct Env {
    /// The test's directory (the store is `store/` in it).
    pub dir: PathBuf,
}

impl Env {
    /// Make the store and import the image.
    pub fn new(tag: &str) -> Env {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests run containers and need root"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("strata-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        for d in ["bin", "etc", "tmp", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        install_busybox(&rootfs.join("bin"));
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
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
        env.ok(&[
            "import",
            tar.to_str().unwrap(),
            "busybox",
            "--change",
            r#"CMD ["/bin/sh"]"#,
        ]);
        env
    }

    /// The store directory.
    pub fn root(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// A path inside the test's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// `strata --root STORE ARGS` (stdin closed).
    pub fn strata(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    /// The command, to add stdin or environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(strata_bin());
        c.arg("--root").arg(self.root()).args(args);
        c
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

    /// Run and expect failure; stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.strata(args);
        assert!(
            !out.status.success(),
            "strata {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// A wrapper named `strata` in `bin/` that adds `--root STORE` (so a script can run
    /// `$DOCKER ...` with DOCKER=strata and PATH starting there).
    pub fn wrapper_bin(&self) -> PathBuf {
        let bin = self.path("wrapper-bin");
        std::fs::create_dir_all(&bin).unwrap();
        let w = bin.join("strata");
        std::fs::write(
            &w,
            format!(
                "#!/bin/sh\nexec '{}' --root '{}' \"$@\"\n",
                strata_bin().display(),
                self.root().display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = self.strata(&["ps", "-a", "-q"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.strata(&["unpause", id]);
            let _ = self.strata(&["rm", "-f", id]);
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

/// True when `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Fail with a pointer to scripts/setup when `tool` is missing.
pub fn need(tool: &str) {
    assert!(have(tool), "{tool} is missing: run scripts/setup");
}

/// Debian's docker-registry on 127.0.0.1 (a free port), behind htpasswd basic auth for one
/// user (`user`, `pass`), with its storage in `dir`; killed on drop.
pub fn auth_registry(dir: &std::path::Path, user: &str, pass: &str) -> common::registry::Registry {
    std::fs::create_dir_all(dir).unwrap();
    let h = Command::new("htpasswd")
        .args(["-Bbn", user, pass])
        .output()
        .unwrap();
    assert!(h.status.success());
    std::fs::write(dir.join("htpasswd"), &h.stdout).unwrap();
    common::registry::Registry::start_with_auth(dir, Some(&dir.join("htpasswd")))
}
