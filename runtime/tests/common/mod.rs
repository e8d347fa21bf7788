//! Helpers shared by the runtime's end-to-end tests.
// Each test binary uses only some of these.
#![allow(dead_code)]

use sha2::Digest;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub mod registry;
pub mod store_env;

/// The strata binary under test: STRATA_BIN, or the workspace's debug build.
pub fn strata_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_BIN") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/strata");
    assert!(
        p.exists(),
        "strata binary not found at {} (cargo build first, or set STRATA_BIN)",
        p.display()
    );
    p
}

/// The host's busybox (Debian's busybox-static), the source of every test image.
pub fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox is missing: run scripts/setup (or apt-get install -y busybox-static)");
}

/// Copy the host's busybox into `bin` with a symlink for each applet. Applets run through
/// the host's copy in the listing: executing the fresh copy races with forks in parallel
/// tests that briefly hold its write descriptor (ETXTBSY).
pub fn install_busybox(bin: &Path) {
    std::fs::create_dir_all(bin).unwrap();
    std::fs::copy(busybox(), bin.join("busybox")).unwrap();
    let list = Command::new(busybox()).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
}

/// Lower-case hex sha256 of `data`.
pub fn sha(data: &[u8]) -> String {
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every path under `root` with its type, mode, owner, size, link count and content hash
/// (symlinks: their target), sorted: equal snapshots mean a byte-for-byte equal tree.
pub fn snapshot(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            let m = path.symlink_metadata().unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            // A store's event log records what was tried, as docker's events do (a `run`
            // that fails to start still logs create and destroy): not the store's state.
            // Nor is `cache/` (seccomp programs compiled by any start): derived data.
            if rel == "events.jsonl" || rel == "cache" {
                continue;
            }
            let ft = m.file_type();
            let what = if ft.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if ft.is_file() {
                sha(&std::fs::read(&path).unwrap())
            } else {
                format!("special {:x}", m.rdev())
            };
            let size = if ft.is_dir() { 0 } else { m.len() };
            out.push(format!(
                "{rel} {:o} {}:{} n{} {size} {what}",
                m.mode(),
                m.uid(),
                m.gid(),
                if ft.is_dir() { 0 } else { m.nlink() }
            ));
        }
    }
    out.sort();
    out
}

/// Create the unprivileged user `user` if missing (useradd gives it subordinate id ranges
/// in /etc/subuid and /etc/subgid).
pub fn ensure_user(user: &str) {
    if Command::new("id").arg(user).output().unwrap().status.code() != Some(0) {
        let st = Command::new("useradd")
            .args(["-M", "-s", "/bin/sh", user])
            .status()
            .unwrap();
        // 9: created meanwhile by a parallel test.
        assert!(st.success() || st.code() == Some(9), "useradd failed");
    }
}

/// Run strata as the unprivileged user `user` with its store under `home` (the default
/// rootless location, $XDG_DATA_HOME/strata): exit code, stdout, stderr.
pub fn as_user(user: &str, home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("setpriv")
        .args(["--reuid", user, "--regid", user, "--init-groups", "env"])
        .arg(format!("HOME={}", home.display()))
        .arg(format!("XDG_DATA_HOME={}", home.join("data").display()))
        .arg(strata_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A store at `dir/store` holding a busybox image imported as `busybox` (the host's
/// busybox, one symlink per applet, an /etc/passwd with root): the store path.
pub fn busybox_store(dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
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
    let store = dir.join("store");
    let out = Command::new(strata_bin())
        .arg("--root")
        .arg(&store)
        .arg("import")
        .arg(&tar)
        .args(["busybox", "--change", r#"CMD ["/bin/sh"]"#])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    store
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

/// Fail clearly when a tool the tests run is not installed.
pub fn need(tool: &str) {
    assert!(have(tool), "{tool} is missing: run scripts/setup");
}

/// Poll `f` every 20 ms for up to 20 s.
pub fn poll(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Assert that `out` (of `what`) succeeded; its stdout.
pub fn check(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Assert that `strata ARGS` succeeded; its stdout.
pub fn expect_ok(args: &[&str], out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "strata {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// strata ARGS on the store at `root`, stdin closed.
pub fn strata_at(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(strata_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// podman ARGS (rootful) on a private storage under `dir` (`podman/root`, `podman/run`):
/// vfs, runc, cgroupfs and file events, so it needs no daemon and leaves the host's alone.
pub fn podman_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("podman")
        .arg("--root")
        .arg(dir.join("podman/root"))
        .arg("--runroot")
        .arg(dir.join("podman/run"))
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

/// A fresh, empty directory `<tmp>/<prefix>-<pid>-<n>` for one test (n counts up per
/// process, so parallel tests never share one).
pub fn fresh_dir(prefix: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `tar -C dir -cf tar .`: an image archive of the tree at `dir`.
pub fn tar_dir(dir: &Path, tar: &Path) {
    let st = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar of {} failed", dir.display());
}

/// /dev/fuse and /dev/net/tun usable by an unprivileged user, as distributions ship them
/// (this machine has them 0600); rootless mounts and pasta's networking need both.
pub fn rootless_devices() {
    use std::os::unix::fs::PermissionsExt;
    for dev in ["/dev/fuse", "/dev/net/tun"] {
        if Path::new(dev).exists() {
            std::fs::set_permissions(dev, std::fs::Permissions::from_mode(0o666)).unwrap();
        }
    }
}
