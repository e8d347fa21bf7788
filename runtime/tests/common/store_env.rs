//! A private store for one test: a fresh directory holding `store/` and the busybox rootfs
//! its images are made from. Its containers, networks and the directory go on drop.

use super::{install_busybox, strata_bin};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A test's directory and the store in it.
pub struct StoreEnv {
    /// The test's directory `strata-<tag>-<pid>-<n>` (the store is `store/` in it).
    pub dir: PathBuf,
}

impl StoreEnv {
    /// The store with the host's busybox imported as `busybox` (CMD /bin/sh).
    pub fn new(tag: &str) -> StoreEnv {
        let env = StoreEnv::bare(tag);
        env.import_rootfs("busybox", &[r#"CMD ["/bin/sh"]"#]);
        env
    }

    /// An empty store and a busybox rootfs at `rootfs()` (bin/ with every applet, tmp/,
    /// root/, etc/passwd and etc/group with root) for the test to add to and import.
    pub fn bare(tag: &str) -> StoreEnv {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests run containers and need root"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("strata-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let env = StoreEnv { dir };
        let rootfs = env.rootfs();
        for d in ["bin", "etc", "tmp", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        install_busybox(&rootfs.join("bin"));
        env.write_rootfs("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
        env.write_rootfs("etc/group", "root:x:0:\n");
        env
    }

    /// The rootfs images are imported from.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Write `text` to `rel` in the rootfs (parents made).
    pub fn write_rootfs(&self, rel: &str, text: &str) {
        let p = self.rootfs().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, text).unwrap();
    }

    /// Tar the rootfs as it is now (file capabilities kept) into `<dir>/<name>.tar` and
    /// import it as `name` with `--change` for each of `changes`: the archive's path.
    pub fn import_rootfs(&self, name: &str, changes: &[&str]) -> PathBuf {
        let tar = self.dir.join(format!("{name}.tar"));
        let st = Command::new("tar")
            .args(["--xattrs", "--xattrs-include=security.capability"])
            .arg("-C")
            .arg(self.rootfs())
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success(), "tar of the rootfs failed");
        let mut args = vec!["import", tar.to_str().unwrap(), name];
        for c in changes {
            args.extend(["--change", c]);
        }
        self.ok(&args);
        tar
    }

    /// The store directory.
    pub fn root(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// A path inside the test's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// `strata --root STORE ARGS`, to add stdin or environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(strata_bin());
        c.arg("--root").arg(self.root()).args(args);
        c
    }

    /// `strata --root STORE ARGS` with stdin closed.
    pub fn strata(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Run and expect success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        super::expect_ok(args, self.strata(args))
    }

    /// Run and expect failure; stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.strata(args);
        assert!(
            !out.status.success(),
            "strata {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
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

    /// `strata inspect NAME`, the one object.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0].clone()
    }

    /// How many containers the store holds (running or not).
    pub fn containers(&self) -> usize {
        std::fs::read_dir(self.root().join("containers"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// A wrapper named `strata` in `wrapper-bin/` that adds `--root STORE` (so a script can
    /// run `$DOCKER ...` with DOCKER=strata and PATH starting there).
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

impl Drop for StoreEnv {
    fn drop(&mut self) {
        if Path::new(&self.root()).exists() {
            let ids = self.strata(&["ps", "-a", "-q"]);
            for id in String::from_utf8_lossy(&ids.stdout).lines() {
                let _ = self.strata(&["unpause", id]);
                let _ = self.strata(&["rm", "-f", "-v", id]);
            }
            let _ = self.strata(&["network", "prune", "-f"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
