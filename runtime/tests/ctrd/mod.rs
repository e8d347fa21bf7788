//! A private containerd (Debian's 1.6) on `strata snapshotter` as its `strata` proxy
//! plugin, everything (root, state, sockets, logs) in one temp dir: shared by
//! snapshotter_containerd.rs (ctr) and snapshotter_cri.rs (the CRI plugin, as a kubelet).
// Each test binary uses only some of these.
#![allow(dead_code)]

use crate::common;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const CONTAINERD: &str = "/usr/bin/containerd";

/// The test's private dir, named as scripts/test expects of a leftover
/// (<test>-<kind>-<pid>-<n>) and short: the unix socket paths under it must fit sun_path
/// (108 bytes). containerd and ctr must be there (scripts/setup installs them).
pub fn test_dir(kind: &str) -> PathBuf {
    common::need(CONTAINERD);
    common::need("ctr");
    PathBuf::from(format!("/tmp/strata-tests/{kind}-{}-0", std::process::id()))
}

pub struct Env {
    pub dir: PathBuf,
    /// The containerd namespace every `ctr` call names. containerd 1.6 keeps runc's state
    /// in /run/containerd/runc/NAMESPACE whatever its config says: removed when empty.
    pub namespace: String,
    snap: Option<Child>,
    containerd: Option<Child>,
}

impl Env {
    /// A fresh `dir` (removed first). Keep it short: the unix socket paths under it must
    /// fit sun_path (108 bytes).
    pub fn new(dir: PathBuf, namespace: &str) -> Env {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Env {
            dir,
            namespace: namespace.to_string(),
            snap: None,
            containerd: None,
        }
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.join("snap.sock")
    }
    pub fn addr(&self) -> String {
        self.dir.join("ctrd.sock").display().to_string()
    }

    pub fn start_snapshotter(&mut self) {
        let _ = std::fs::remove_file(self.sock());
        let mut cmd = Command::new(common::strata_bin());
        cmd.arg("--root")
            .arg(self.dir.join("snaproot"))
            .arg("snapshotter")
            .arg("--address")
            .arg(self.sock());
        self.snap = Some(self.spawn_logged(cmd, "snapshotter.log"));
        let sock = self.sock();
        wait("the snapshotter's socket", Duration::from_secs(20), || {
            sock.exists()
        });
    }

    pub fn kill_snapshotter(&mut self) {
        if let Some(mut c) = self.snap.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start containerd with the snapshotter as `[proxy_plugins.strata]`. `plugins` is
    /// appended to the config (TOML of `[plugins."…"]` tables); without it the CRI plugin
    /// is disabled.
    pub fn start_containerd(&mut self, plugins: Option<&str>) {
        let d = self.dir.display();
        let disabled = match plugins {
            None => r#"disabled_plugins = ["io.containerd.grpc.v1.cri"]"#,
            Some(_) => "",
        };
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
{disabled}
[grpc]
  address = "{d}/ctrd.sock"
[ttrpc]
  address = "{d}/ctrd.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[proxy_plugins.strata]
  type = "snapshot"
  address = "{sock}"
{extra}"#,
            sock = self.sock().display(),
            extra = plugins.unwrap_or("")
        );
        let cfg = self.dir.join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut cmd = Command::new(CONTAINERD);
        cmd.arg("--config").arg(&cfg);
        self.containerd = Some(self.spawn_logged(cmd, "containerd.log"));
        wait("containerd", Duration::from_secs(30), || {
            self.ctr(&["version"]).status.success()
        });
    }

    /// Start `cmd` in the background, its stderr to `log` in the test dir.
    fn spawn_logged(&self, mut cmd: Command, log: &str) -> Child {
        let log = std::fs::File::create(self.dir.join(log)).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// `ctr image import` of the OCI archive `archive` into the strata snapshotter; ctr's
    /// output.
    pub fn import(&self, archive: &Path) -> String {
        self.ctr_ok(&[
            "image",
            "import",
            "--snapshotter",
            "strata",
            "--all-platforms",
            archive.to_str().unwrap(),
        ])
    }

    /// `ctr ARGS` in the namespace, bounded to 120 s.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["120", "ctr", "-a", &self.addr(), "-n", &self.namespace])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed ({}): {}{}\n-- snapshotter log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log("snapshotter.log")
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ctr snapshots ls` of the strata snapshotter: (KEY, KIND) pairs, sorted.
    pub fn snapshots(&self) -> Vec<(String, String)> {
        let out = self.ctr_ok(&["snapshots", "--snapshotter", "strata", "ls"]);
        let mut v: Vec<(String, String)> = out
            .lines()
            .skip(1)
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                Some((w.first()?.to_string(), w.last()?.to_string()))
            })
            .collect();
        v.sort();
        v
    }

    /// The committed snapshots `ctr snapshots ls` shows.
    pub fn committed(&self) -> Vec<String> {
        self.snapshots()
            .into_iter()
            .filter(|(_, kind)| kind == "Committed")
            .map(|(key, _)| key)
            .collect()
    }

    /// Kill and delete whatever tasks and containers a failed test left in the namespace,
    /// so that no shim outlives the test.
    fn reap(&self) {
        let list = |what: &str| -> Vec<String> {
            let out = self.ctr(&[what, "ls", "-q"]);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        };
        for t in list("tasks") {
            let _ = self.ctr(&["tasks", "kill", "-a", "-s", "SIGKILL", &t]);
            let _ = self.ctr(&["tasks", "delete", "-f", &t]);
        }
        for c in list("containers") {
            let _ = self.ctr(&["containers", "rm", &c]);
        }
    }
}

/// Poll `f` every 50 ms until it holds, for at most `limit`.
pub fn wait(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Every mount point under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut c) = self.containerd.take() {
            if let Ok(None) = c.try_wait() {
                self.reap();
            }
            stop(&mut c);
        }
        if let Some(mut c) = self.snap.take() {
            stop(&mut c);
        }
        for m in mounts_under(&self.dir) {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
        if std::env::var_os("STRATA_KEEP_CTRD").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        let _ = std::fs::remove_dir(Path::new("/run/containerd/runc").join(&self.namespace));
    }
}
