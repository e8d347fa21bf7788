//! Container isolation (issue 8): what a container may reach of the host. Masked and
//! read-only /proc and /sys paths; host files outside the root and the volumes by every
//! route we know (absolute paths, `..`, /proc/PID/root and cwd, symlinks, devices, mounts,
//! chroot, file handles, nested user namespaces); volumes that stay within themselves;
//! capabilities, devices, hostname, signals and rlimits; and the same rootless, where root in
//! the container is an unprivileged user on the host.
//!
//! Real containers of a busybox image (Debian's busybox-static) on both drivers, plus
//! `probe`, a small static C program compiled here with the system cc, which makes one
//! syscall per command and prints `ok ...` or the errno's name: the assertions compare
//! exact errnos. Every probe that must fail has a positive control showing the same probe
//! succeeds where access exists (inside the image, in a volume, or on the host).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
use common::{ensure_user, install_busybox, strata_bin};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod capabilities;
mod host_paths;
mod probe_c;
mod proc_masks;
mod rootless;
use capabilities::*;
use probe_c::*;
use proc_masks::*;

/// The rootless user (created as in runtime/tests/containers/).
const USER: &str = "strata-rootless";

/// A private store with the image `iso`: busybox, `probe` (and a setuid-root copy,
/// `probe-suid`), /etc/keep (9 bytes), /tmp 1777, and /evil-link, a symlink to the host
/// path of `host/cdir`. Beside the store: `host/canary` ("secret\n") and `host/cdir/inside`,
/// which no container may reach.
struct Env {
    dir: PathBuf,
    /// Mounts the test made on the host, unmounted on drop.
    mounts: Vec<PathBuf>,
}

impl Env {
    fn new() -> Env {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests run containers and need root"
        );
        let dir = common::fresh_dir("strata-iso");
        std::fs::create_dir_all(dir.join("host/cdir")).unwrap();
        std::fs::write(dir.join("host/canary"), "secret\n").unwrap();
        std::fs::write(dir.join("host/cdir/inside"), "secret\n").unwrap();
        let src = dir.join("probe.c");
        std::fs::write(&src, PROBE_C).unwrap();
        let cc = Command::new("cc")
            .args(["-static", "-O", "-Wall", "-o"])
            .arg(dir.join("probe"))
            .arg(&src)
            .output()
            .expect("cc (build-essential, installed by scripts/setup) is needed for the probe");
        assert!(
            cc.status.success(),
            "cannot build the probe: {}",
            String::from_utf8_lossy(&cc.stderr)
        );
        let rootfs = dir.join("rootfs");
        for d in ["bin", "etc", "tmp", "root", "home/bob"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::set_permissions(rootfs.join("tmp"), PermissionsExt::from_mode(0o1777)).unwrap();
        install_busybox(&rootfs.join("bin"));
        std::fs::copy(dir.join("probe"), rootfs.join("bin/probe")).unwrap();
        std::fs::copy(dir.join("probe"), rootfs.join("bin/probe-suid")).unwrap();
        std::fs::set_permissions(
            rootfs.join("bin/probe-suid"),
            PermissionsExt::from_mode(0o4755),
        )
        .unwrap();
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000:bob:/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nbob:x:1000:\n").unwrap();
        std::fs::write(rootfs.join("etc/keep"), "original\n").unwrap();
        std::os::unix::fs::symlink(dir.join("host/cdir"), rootfs.join("evil-link")).unwrap();
        let tar = dir.join("iso.tar");
        common::tar_dir(&rootfs, &tar);
        let env = Env {
            dir,
            mounts: Vec::new(),
        };
        env.ok(&["import", tar.to_str().unwrap(), "iso"]);
        env
    }

    fn canary(&self) -> String {
        self.dir.join("host/canary").to_str().unwrap().to_string()
    }

    fn cdir(&self) -> String {
        self.dir.join("host/cdir").to_str().unwrap().to_string()
    }

    fn strata(&self, args: &[&str]) -> Output {
        Command::new(strata_bin())
            .arg("--root")
            .arg(self.dir.join("store"))
            .args(args)
            .env("STRATA_ISO_HOST_SECRET", "hunter2")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        common::expect_ok(args, self.strata(args))
    }

    /// Mount a tmpfs at `dir` on the host (removed on drop).
    fn host_tmpfs(&mut self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        self.mounts.push(dir.to_path_buf());
    }

    /// The state.json of container `id` in the store under `store`.
    fn state(store: &Path, id: &str) -> serde_json::Value {
        let p = store.join("containers").join(id).join("state.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = self.strata(&["ps", "-a", "-q"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.strata(&["rm", "-f", id]);
        }
        for m in self.mounts.iter().rev() {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Probes run in one container: each a label, a shell command printing one line, and the
/// line expected.
#[derive(Default)]
struct Probes {
    list: Vec<(String, String, String)>,
}

impl Probes {
    fn add(&mut self, label: impl Into<String>, cmd: impl Into<String>, want: &str) {
        self.list.push((label.into(), cmd.into(), want.to_string()));
    }

    /// One shell script printing `label: output` per probe.
    fn script(&self) -> String {
        let mut s = String::new();
        for (i, (_, cmd, _)) in self.list.iter().enumerate() {
            s.push_str(&format!(
                "echo \"p{i}: $( ({cmd}) 2>&1 | tr '\\n' ' ' | sed 's/ *$//')\"\n"
            ));
        }
        s
    }

    /// Compare the container's output with the expectations.
    fn check(&self, what: &str, out: &str) {
        let mut got = BTreeMap::new();
        for line in out.lines() {
            if let Some((k, v)) = line.split_once(": ") {
                got.insert(k.to_string(), v.to_string());
            } else if let Some(k) = line.strip_suffix(':') {
                got.insert(k.to_string(), String::new());
            }
        }
        let mut wrong = Vec::new();
        for (i, (label, cmd, want)) in self.list.iter().enumerate() {
            let g = got.get(&format!("p{i}")).cloned();
            if g.as_deref() != Some(want.as_str()) {
                wrong.push(format!("  {label}: `{cmd}` gave {g:?}, want {want:?}"));
            }
        }
        assert!(
            wrong.is_empty(),
            "{what}: {} of {} probes wrong:\n{}\n(output:\n{out})",
            wrong.len(),
            self.list.len(),
            wrong.join("\n")
        );
    }

    fn len(&self) -> usize {
        self.list.len()
    }
}

/// Run `probes` with `strata run --rm ARGS iso sh -c SCRIPT` as root.
fn run_probes(e: &Env, what: &str, args: &[&str], probes: &Probes) {
    let script = probes.script();
    // --init: the probes of PID 1 are of strata's own init (a host binary, non-dumpable).
    let mut a = vec!["run", "--rm", "--init"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["iso", "sh", "-c", &script]);
    let out = e.strata(&a);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    probes.check(what, &stdout);
}

/// The probe binary run on the host (positive controls).
fn host_probe(e: &Env, args: &[&str]) -> String {
    let out = Command::new(e.dir.join("probe"))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
