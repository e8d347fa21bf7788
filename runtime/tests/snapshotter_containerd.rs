//! `strata snapshotter` under Debian's containerd (1.6) as a proxy plugin: import a
//! strata-saved busybox with `ctr image import --snapshotter strata`, run a container on
//! it, list the committed layers, and find them all again after the snapshotter is killed
//! and restarted. Everything (containerd's root, state and sockets) lives in one temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CONTAINERD: &str = "/usr/bin/containerd";
// containerd 1.6 keeps runc's state in /run/containerd/runc/NAMESPACE whatever its config
// says: a namespace of the test's own, removed when empty.
const NAMESPACE: &str = "strata-snapshotter-test";

struct Env {
    dir: PathBuf,
    snap: Option<Child>,
    containerd: Option<Child>,
}

impl Env {
    fn sock(&self) -> PathBuf {
        self.dir.join("snap.sock")
    }
    fn addr(&self) -> String {
        self.dir.join("ctrd.sock").display().to_string()
    }

    fn start_snapshotter(&mut self) {
        let _ = std::fs::remove_file(self.sock());
        let log = std::fs::File::create(self.dir.join("snapshotter.log")).unwrap();
        let child = Command::new(common::strata_bin())
            .arg("--root")
            .arg(self.dir.join("snaproot"))
            .arg("snapshotter")
            .arg("--address")
            .arg(self.sock())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.snap = Some(child);
        let sock = self.sock();
        wait("the snapshotter's socket", Duration::from_secs(20), || {
            sock.exists()
        });
    }

    fn kill_snapshotter(&mut self) {
        if let Some(mut c) = self.snap.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn start_containerd(&mut self) {
        let d = self.dir.display();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
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
"#,
            sock = self.sock().display()
        );
        let cfg = self.dir.join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(self.dir.join("containerd.log")).unwrap();
        let child = Command::new(CONTAINERD)
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.containerd = Some(child);
        wait("containerd", Duration::from_secs(30), || {
            self.ctr(&["version"]).status.success()
        });
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .args(["-a", &self.addr(), "-n", NAMESPACE])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed ({}): {}{}\n-- snapshotter log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("snapshotter.log")).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The committed snapshots `ctr snapshots ls` shows (KEY PARENT KIND lines).
    fn committed(&self) -> Vec<String> {
        let out = self.ctr_ok(&["snapshots", "--snapshotter", "strata", "ls"]);
        let mut v: Vec<String> = out
            .lines()
            .skip(1)
            .filter(|l| l.split_whitespace().last() == Some("Committed"))
            .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
            .collect();
        v.sort();
        v
    }
}

/// Poll `f` every 50 ms until it holds, for at most `limit`.
fn wait(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
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

/// Distinct inodes under `dir`, itself included (du's count).
fn count_inodes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        seen.insert(md.ino());
        if md.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    seen.len() as u64
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
            stop(&mut c);
        }
        if let Some(mut c) = self.snap.take() {
            stop(&mut c);
        }
        for m in mounts_under(&self.dir) {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir(Path::new("/run/containerd/runc").join(NAMESPACE));
    }
}

#[test]
fn containerd_runs_on_strata_snapshots() {
    if !Path::new(CONTAINERD).exists() {
        eprintln!("skipped: {CONTAINERD} is missing (scripts/setup installs containerd)");
        return;
    }
    common::need("ctr");
    let t0 = Instant::now();
    // Named as scripts/test expects of a leftover (<test>-<kind>-<pid>-<n>), and short:
    // the unix socket paths under it must fit sun_path (108 bytes).
    let dir = PathBuf::from(format!(
        "/tmp/strata-tests/snapshotter-containerd-{}-0",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut env = Env {
        dir: dir.clone(),
        snap: None,
        containerd: None,
    };

    // Two layers: busybox and one that adds /two and deletes /etc/group (a whiteout that
    // containerd applies through the overlay mount this snapshotter returns).
    let store = common::busybox_store(&dir.join("bb"));
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN rm /etc/group && echo two > /two\n",
    )
    .unwrap();
    let build = ["build", "-q", "-t", "two", ctx.to_str().unwrap()];
    common::expect_ok(&build, common::strata_at(&store, &build));
    let archive = dir.join("two.tar");
    let save = ["save", "-o", archive.to_str().unwrap(), "two"];
    common::expect_ok(&save, common::strata_at(&store, &save));

    env.start_snapshotter();
    env.start_containerd();
    let imported = env.ctr_ok(&[
        "image",
        "import",
        "--snapshotter",
        "strata",
        "--all-platforms",
        archive.to_str().unwrap(),
    ]);
    let image = env
        .ctr_ok(&["image", "ls", "-q"])
        .lines()
        .find(|l| l.contains("two"))
        .unwrap_or_else(|| panic!("no image after import: {imported}"))
        .to_string();

    let out = env.ctr_ok(&[
        "run",
        "--rm",
        "--snapshotter",
        "strata",
        &image,
        "ctr1",
        "sh",
        "-c",
        "echo hi; cat /two; test -e /etc/group || echo gone",
    ]);
    assert_eq!(out, "hi\ntwo\ngone\n", "container output");

    let layers = env.committed();
    assert_eq!(layers.len(), 2, "committed snapshots: {layers:?}");
    // The db the snapshotter keeps says the same as containerd's listing.
    let db = std::fs::read_to_string(dir.join("snaproot/metadata.json")).unwrap();
    assert!(db.contains("\"committed\""), "metadata: {db}");

    // A killed snapshotter comes back with every snapshot: the listing is the same and a
    // second container prepares on top of the committed layers.
    env.kill_snapshotter();
    env.start_snapshotter();
    // containerd's client reconnects with a backoff: the first calls may still fail.
    wait(
        "containerd to reach the restarted snapshotter",
        Duration::from_secs(30),
        || {
            env.ctr(&["snapshots", "--snapshotter", "strata", "ls"])
                .status
                .success()
        },
    );
    assert_eq!(
        env.committed(),
        layers,
        "committed snapshots after a restart"
    );
    let out = env.ctr_ok(&[
        "run",
        "--rm",
        "--snapshotter",
        "strata",
        &image,
        "ctr2",
        "cat",
        "/etc/passwd",
    ]);
    assert!(out.starts_with("root:x:0:0"), "ctr2: {out}");
    // Usage of the layer: what du says of its fs directory (allocated bytes).
    // The inode counts containerd reports are those of each layer's fs/ on disk.
    let usage = env.ctr_ok(&["snapshots", "--snapshotter", "strata", "usage"]);
    let db: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("snaproot/metadata.json")).unwrap())
            .unwrap();
    for name in &layers {
        let line = usage
            .lines()
            .find(|l| l.starts_with(name.as_str()))
            .unwrap_or_else(|| panic!("no usage of {name}: {usage}"));
        let inodes: u64 = line.split_whitespace().last().unwrap().parse().unwrap();
        // containerd names the backend's snapshot NAMESPACE/N/NAME.
        let (_, rec) = db["snapshots"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.ends_with(&format!("/{name}")))
            .unwrap_or_else(|| panic!("{name} not in the snapshotter's db"));
        let fs = dir.join(format!("snaproot/snapshots/{}/fs", rec["id"]));
        assert_eq!(inodes, count_inodes(&fs), "inodes of {name}");
    }
    eprintln!(
        "snapshotter_containerd: {} layer(s), {:.1} s",
        layers.len(),
        t0.elapsed().as_secs_f64()
    );
}
