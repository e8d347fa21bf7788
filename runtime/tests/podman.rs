//! podman itself with strata as the overlay driver's `mount_program` (storage.conf), rootful
//! with `--uidmap 0:100000:65536` and rootless (a user with /etc/subuid ranges, with
//! `--userns=keep-id` and `--uidmap 0:1:5000`): run, exec, build with several RUN steps,
//! commit, diff, export and save, asserting ownership and content inside the container,
//! through the mount seen from the host, on disk in the upper, and in the tars podman writes.
//!
//! Every test has its own store and config files, no network and no pulls (the base image
//! is `podman import` of a busybox-static rootfs), and every podman command a time limit.
//! `STRATA_PODMAN_MOUNT_PROGRAM=/usr/bin/fuse-overlayfs` runs the same tests against
//! fuse-overlayfs, the reference strata must match (a check of the tests themselves).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The unprivileged user of the rootless tests.
const USER: &str = "strata-podman";
/// The base image every test imports.
const BASE: &str = "localhost/base:latest";
/// The test container's name: not hex, so that it never matches an image id prefix.
const CTR: &str = "strata-ctr";
/// The mapping of the rootful tests (as `--uidmap` and `--gidmap`).
const ROOTFUL_MAP: &str = "0:100000:65536";
/// Seconds one podman command may take before it is killed (`timeout -k 10`).
const PODMAN_TIMEOUT: &str = "120";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The mount program under test: STRATA_PODMAN_MOUNT_PROGRAM or the built strata.
fn mount_program() -> PathBuf {
    match std::env::var_os("STRATA_PODMAN_MOUNT_PROGRAM") {
        Some(p) => PathBuf::from(p),
        None => common::strata_bin(),
    }
}

fn need(tool: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{tool} is missing: run scripts/setup");
}

/// The rootless user: ids and the start of its subordinate uid and gid ranges.
#[derive(Clone, Copy, Debug)]
struct User {
    uid: u32,
    gid: u32,
    subuid: u32,
    subgid: u32,
}

impl User {
    /// A host id seen from the rootless podman's user namespace (0: the user itself,
    /// 1..: its subordinate range), uid or gid.
    fn ns_to_host(&self, id: u32, gid: bool) -> u32 {
        let (own, sub) = if gid {
            (self.gid, self.subgid)
        } else {
            (self.uid, self.subuid)
        };
        if id == 0 {
            own
        } else {
            sub + id - 1
        }
    }
}

/// Start of `user`'s range in /etc/subuid or /etc/subgid.
fn sub_start(file: &str, user: &str) -> Option<u32> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{user}:")))
        .and_then(|r| r.split(':').next())
        .and_then(|s| s.parse().ok())
}

/// The rootless user, created once with subordinate id ranges (useradd adds them; a user
/// made elsewhere without them gets 200000-265535), and /dev/fuse usable by it: rootless
/// podman runs the mount program as root of its user namespace, which opens /dev/fuse
/// itself (no setuid fusermount3), so the device must be 0666 as distributions ship it.
fn rootless_user() -> User {
    static ONCE: std::sync::Mutex<Option<User>> = std::sync::Mutex::new(None);
    let mut once = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(u) = *once {
        return u;
    }
    for t in ["newuidmap", "newgidmap", "setpriv", "useradd", "usermod"] {
        need(t);
    }
    common::ensure_user(USER);
    for (file, flag) in [
        ("/etc/subuid", "--add-subuids"),
        ("/etc/subgid", "--add-subgids"),
    ] {
        if sub_start(file, USER).is_none() {
            let st = Command::new("usermod")
                .args([flag, "200000-265535", USER])
                .status()
                .unwrap();
            assert!(st.success(), "usermod {flag} failed");
        }
    }
    let meta = std::fs::metadata("/dev/fuse").expect("/dev/fuse is missing");
    if meta.permissions().mode() & 0o666 != 0o666 {
        std::fs::set_permissions("/dev/fuse", PermissionsExt::from_mode(0o666)).unwrap();
    }
    let pw = nix::unistd::User::from_name(USER).unwrap().unwrap();
    let u = User {
        uid: pw.uid.as_raw(),
        gid: pw.gid.as_raw(),
        subuid: sub_start("/etc/subuid", USER).unwrap(),
        subgid: sub_start("/etc/subgid", USER).unwrap(),
    };
    *once = Some(u);
    u
}

/// One podman configuration: its own store, runroot, config files and (rootless) home,
/// everything removed on drop.
struct Podman {
    dir: PathBuf,
    user: Option<User>,
    program: PathBuf,
}

impl Podman {
    fn rootful() -> Podman {
        Podman::new(None)
    }

    fn rootless() -> Podman {
        Podman::new(Some(rootless_user()))
    }

    fn new(user: Option<User>) -> Podman {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests run podman as root and as a created user: run them as root"
        );
        for t in ["podman", "runc", "conmon", "timeout", "tar"] {
            need(t);
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("strata-podman-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home/run")).unwrap();
        // The rootless user walks into the test dir (program, tars, config).
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o755)).unwrap();
        // Canonical: it is compared with /proc/PID/exe of the daemon.
        let mut program = mount_program()
            .canonicalize()
            .unwrap_or_else(|e| panic!("mount program {}: {e}", mount_program().display()));
        if let Some(u) = user {
            // The user must be able to run the program: the workspace may sit under a
            // private home (/root). A hard link (or copy) inside the test dir is enough.
            let bin = dir.join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            let linked = bin.join(program.file_name().unwrap());
            if std::fs::hard_link(&program, &linked).is_err() {
                std::fs::copy(&program, &linked).unwrap();
            }
            program = linked;
            let chown = |p: &Path| {
                std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid)).unwrap();
            };
            chown(&dir.join("home"));
            chown(&dir.join("home/run"));
            // podman wants its XDG_RUNTIME_DIR private to the user.
            std::fs::set_permissions(dir.join("home/run"), PermissionsExt::from_mode(0o700))
                .unwrap();
        }
        let p = Podman { dir, user, program };
        p.write_config();
        p
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    /// storage.conf, containers.conf and an empty registries.conf, passed through
    /// CONTAINERS_STORAGE_CONF, CONTAINERS_CONF and CONTAINERS_REGISTRIES_CONF so that
    /// nothing of the machine's or the user's configuration applies.
    fn write_config(&self) {
        let d = self.dir.display();
        // Rootless podman ignores graphroot/runroot of storage.conf: rootless_storage_path
        // is its store, and its runroot is $XDG_RUNTIME_DIR/containers.
        let storage = format!(
            "[storage]\n\
             driver = \"overlay\"\n\
             graphroot = \"{d}/root\"\n\
             runroot = \"{d}/runroot\"\n\
             rootless_storage_path = \"{d}/home/storage\"\n\
             [storage.options.overlay]\n\
             mount_program = \"{}\"\n",
            self.program.display()
        );
        std::fs::write(self.path("storage.conf"), storage).unwrap();
        // - default_ulimits: podman's defaults (1048576) exceed the hard limits here and runc
        //   fails to set them (BRIEF §9); they apply to run, create and build's RUN steps.
        // - netns none: no network, so no slirp4netns/pasta/CNI and nothing outside.
        // - runtime runc: crun 1.8 refuses the hybrid cgroup hierarchy of these machines.
        // - cgroup_manager cgroupfs, events_logger file: no systemd or journald here.
        // - tmp_dir (rootful): podman's lock and state files per test, not /run/libpod
        //   shared with every other podman on the machine. Rootless podman keeps it under
        //   the private $XDG_RUNTIME_DIR (and its pause process's pid there).
        let mut containers = String::from(
            "[containers]\n\
             default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             netns = \"none\"\n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n",
        );
        if self.user.is_none() {
            containers.push_str(&format!("tmp_dir = \"{d}/tmp\"\n"));
            // podman 4.3 (containers/storage before PR #1551) also puts the lower layers
            // behind kernel id-mapped mounts when it uses a mount_program, so that the ids
            // are shifted twice and every image file shows as nobody (fuse-overlayfs too).
            // Its cached probe result in the runroot, set to "unsupported", turns that off,
            // as newer podman does for every mount_program. Rootless podman never uses them.
            let overlay = self.path("runroot/overlay");
            std::fs::create_dir_all(&overlay).unwrap();
            std::fs::write(
                overlay.join("idmapped-lower-dir-false"),
                "disabled by the test: mount_program shifts ids itself",
            )
            .unwrap();
        }
        std::fs::write(self.path("containers.conf"), containers).unwrap();
        std::fs::write(self.path("registries.conf"), "").unwrap();
    }

    /// podman ARGS, as root or as the rootless user with a clean environment, killed after
    /// [`PODMAN_TIMEOUT`] seconds.
    fn podman(&self, args: &[&str]) -> Output {
        let mut c = Command::new("timeout");
        c.args(["-k", "10", PODMAN_TIMEOUT]);
        if self.user.is_some() {
            let home = self.path("home");
            c.args(["setpriv", "--reuid", USER, "--regid", USER, "--init-groups"]);
            c.args(["env", "-i"]);
            c.arg(format!("HOME={}", home.display()));
            c.arg(format!("XDG_RUNTIME_DIR={}", home.join("run").display()));
            c.arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
            c.arg(format!(
                "CONTAINERS_CONF={}",
                self.path("containers.conf").display()
            ));
            c.arg(format!(
                "CONTAINERS_STORAGE_CONF={}",
                self.path("storage.conf").display()
            ));
            c.arg(format!(
                "CONTAINERS_REGISTRIES_CONF={}",
                self.path("registries.conf").display()
            ));
            c.arg("podman");
            c.current_dir(&home);
        } else {
            c.arg("podman");
            c.env("CONTAINERS_CONF", self.path("containers.conf"));
            c.env("CONTAINERS_STORAGE_CONF", self.path("storage.conf"));
            c.env("CONTAINERS_REGISTRIES_CONF", self.path("registries.conf"));
            c.current_dir(&self.dir);
        }
        c.args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// podman ARGS, expecting success; stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        let who = if self.user.is_some() {
            "rootless"
        } else {
            "rootful"
        };
        assert!(
            out.status.success(),
            "{who} podman {args:?} failed ({}; exit 124 = timed out), mount_program {}:\n{}{}",
            out.status,
            self.program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A podman Go-template field of a `container` or `image` (the kind given: a bare
    /// `podman inspect NAME` also matches image ids starting with NAME).
    fn inspect(&self, kind: &str, what: &str, format: &str) -> String {
        self.ok(&[kind, "inspect", "--format", format, what])
            .trim()
            .to_string()
    }

    /// Import the base image: busybox plus /data (keep, del, owned by 1000:1000, sub/deep)
    /// and, rootless, /home/me owned by the user with a file `mine` in it.
    fn import_base(&self) {
        let root = self.path("rootfs");
        common::install_busybox(&root.join("bin"));
        for d in [
            "etc", "tmp", "root", "proc", "sys", "dev", "home", "var/log", "data/sub",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::set_permissions(root.join("tmp"), PermissionsExt::from_mode(0o1777)).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        std::fs::write(root.join("data/keep"), "keep\n").unwrap();
        std::fs::write(root.join("data/del"), "del\n").unwrap();
        std::fs::write(root.join("data/owned"), "owned\n").unwrap();
        std::fs::write(root.join("data/sub/deep"), "deep\n").unwrap();
        std::os::unix::fs::chown(root.join("data/owned"), Some(1000), Some(1000)).unwrap();
        if let Some(u) = self.user {
            let me = root.join("home/me");
            std::fs::create_dir(&me).unwrap();
            std::fs::write(me.join("mine"), "mine\n").unwrap();
            for p in [&me, &me.join("mine")] {
                std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid)).unwrap();
            }
        }
        let tar = self.path("base.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["--numeric-owner", "-cf"])
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success(), "tar of the base rootfs failed");
        std::fs::set_permissions(&tar, PermissionsExt::from_mode(0o644)).unwrap();
        self.ok(&["import", "-q", tar.to_str().unwrap(), BASE]);
    }

    /// The daemon serving the container's rootfs at `merged`: its pid, after checking that
    /// it is the mount program under test and that, in its mount namespace, `merged` is a
    /// FUSE mount named after the program (strata: `strata`).
    fn daemon_of(&self, merged: &str) -> i32 {
        let found = self.serving(merged);
        let ours: Vec<_> = found
            .iter()
            .filter(|(_, exe, _)| exe.as_deref() == Some(self.program.as_path()))
            .collect();
        assert!(
            ours.len() == 1,
            "expected one {} process serving {merged}, found: {found:?}",
            self.program.display()
        );
        let pid = ours[0].0;
        let fsname = self
            .program
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let line = mountinfo
            .lines()
            .rfind(|l| l.split(' ').nth(4) == Some(merged))
            .unwrap_or_else(|| panic!("{merged} is not mounted in the daemon's namespace"));
        let tail: Vec<&str> = line.split(" - ").nth(1).unwrap().split(' ').collect();
        assert!(
            tail[0].starts_with("fuse") && tail[1] == fsname,
            "{merged} is not a FUSE mount of {fsname}: {line}"
        );
        pid
    }

    /// `podman rm NAME`. podman 4.3 often fails removing a stopped user-namespaced
    /// container with "userdata/shm: device or resource busy" and removes it all the same
    /// (the kernel overlay driver too, about every second time with `--uidmap`): that one
    /// error is accepted once the container is gone.
    fn rm(&self, name: &str) {
        let out = self.podman(&["rm", name]);
        if out.status.success() {
            return;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let gone = !self.podman(&["container", "exists", name]).status.success();
        assert!(
            gone && err.contains("/userdata/shm: device or resource busy"),
            "podman rm {name} failed ({}): {err}",
            out.status
        );
    }

    /// Once podman has unmounted everything, no mount program daemon of this test is left
    /// (polled for at most 10 s: a daemon exits after the kernel ends its connection).
    fn no_daemons_left(&self) {
        let dir = self.dir.to_string_lossy().into_owned();
        let left = || -> Vec<_> {
            self.serving(&dir)
                .into_iter()
                .filter(|(_, exe, _)| exe.as_deref() == Some(self.program.as_path()))
                .collect()
        };
        for _ in 0..200 {
            if left().is_empty() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "daemons still running after podman unmounted everything: {:?}",
            left()
        );
    }

    /// Owners of `paths` as the store's user namespace sees them: the host's rootful, podman's
    /// own namespace rootless (through `podman unshare`, as FUSE lets no process outside the
    /// mounter's user namespace into a mount made inside one).
    fn owners(&self, paths: &[PathBuf]) -> Vec<(u32, u32)> {
        if self.user.is_none() {
            return paths.iter().map(|p| owner(p)).collect();
        }
        let mut args = vec!["unshare", "stat", "-c", "%u:%g"];
        args.extend(paths.iter().map(|p| p.to_str().unwrap()));
        self.ok(&args)
            .lines()
            .map(|l| {
                let (u, g) = l.split_once(':').unwrap();
                (u.parse().unwrap(), g.parse().unwrap())
            })
            .collect()
    }

    /// Processes with an argument starting with `path` (a mountpoint: the processes serving
    /// it): pid, executable, command line.
    fn serving(&self, path: &str) -> Vec<(i32, Option<PathBuf>, String)> {
        let mut found = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            if cmdline
                .split(|b| *b == 0)
                .any(|a| a.starts_with(path.as_bytes()))
            {
                let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
                found.push((
                    pid,
                    exe,
                    String::from_utf8_lossy(&cmdline).replace('\0', " "),
                ));
            }
        }
        found
    }

    /// Stop and remove every container, then stop rootless podman's pause process (it
    /// holds the user and mount namespaces) and anything else still running from the test
    /// dir, unmount what is left under it and remove it.
    fn cleanup(&self) {
        let _ = self.podman(&["rm", "-af", "-t", "0"]);
        let _ = self.podman(&["image", "unmount", "-a"]);
        if self.user.is_some() {
            let pid = std::fs::read_to_string(self.path("home/run/libpod/tmp/pause.pid"));
            if let Ok(pid) = pid.unwrap_or_default().trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let dir = self.dir.to_string_lossy().into_owned();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            if String::from_utf8_lossy(&cmdline).contains(&dir) {
                eprintln!(
                    "cleanup: killing leftover {pid}: {}",
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                );
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&format!("{dir}/")))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        if std::env::var_os("STRATA_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// One tar entry: type, owner, mode, content (symlinks: target).
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    kind: char,
    uid: u64,
    gid: u64,
    mode: u32,
    data: Vec<u8>,
}

/// The entries of a tar (read from `r`) by path without `./` and trailing `/`.
fn tar_entries(r: impl Read) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(r);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let path = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Regular => 'f',
            tar::EntryType::Link => 'h',
            _ => '?',
        };
        let mut data = Vec::new();
        if kind == 'l' {
            data = e.link_name_bytes().unwrap_or_default().into_owned();
        } else {
            e.read_to_end(&mut data).unwrap();
        }
        let entry = Entry {
            kind,
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mode: h.mode().unwrap() & 0o7777,
            data,
        };
        out.insert(path, entry);
    }
    out
}

/// The layer tars of a docker-archive from `podman save`, bottom first.
fn saved_layers(archive: &Path) -> Vec<BTreeMap<String, Entry>> {
    let outer = tar_entries(std::fs::File::open(archive).unwrap());
    let manifest: serde_json::Value =
        serde_json::from_slice(&outer.get("manifest.json").expect("manifest.json").data).unwrap();
    manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let name = l.as_str().unwrap();
            tar_entries(
                outer
                    .get(name)
                    .expect("layer in the archive")
                    .data
                    .as_slice(),
            )
        })
        .collect()
}

fn file(tar: &BTreeMap<String, Entry>, path: &str) -> Entry {
    tar.get(path)
        .unwrap_or_else(|| {
            panic!(
                "{path} missing from the tar: {:?}",
                tar.keys().collect::<Vec<_>>()
            )
        })
        .clone()
}

/// Assert owner and content of a regular file in a tar.
fn assert_tar_file(tar: &BTreeMap<String, Entry>, path: &str, owner: (u64, u64), data: &str) {
    let e = file(tar, path);
    assert_eq!(
        (
            e.kind,
            e.uid,
            e.gid,
            String::from_utf8_lossy(&e.data).into_owned()
        ),
        ('f', owner.0, owner.1, data.to_string()),
        "{path} in the tar (kind, uid, gid, content)"
    );
}

/// Owner (uid, gid) of a path on the host.
fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

/// How container ids appear outside, in the store's user namespace (the host's rootful,
/// podman's own rootless): through the FUSE mount, and in the upper directory on disk. The
/// upper keeps the container's ids unshifted, as fuse-overlayfs does: containers/storage
/// gives a container layer on a mount_program no id map of its own (the program shifts),
/// so that its diff is the layer as it is.
struct Ids {
    /// `podman run`/`exec` options selecting the user namespace.
    opts: Vec<String>,
    /// `podman exec` options to act as the container's root.
    root: Vec<String>,
    /// Container uid (or gid, with `true`) to the id through the mount.
    mount: Box<dyn Fn(u32, bool) -> u32>,
}

/// The changes every run test makes in /data as the container's root, and prints stats of.
const MUTATE: &str = "set -e
stat -c '%u:%g %n' /etc/passwd /bin/busybox /data /data/keep /data/owned /data/sub/deep
echo new > /data/new
mkdir /data/newdir
echo f > /data/newdir/f
chown 5:6 /data/newdir/f
echo more >> /data/keep
rm /data/del
chown 7:8 /data/owned
mv /data/sub /data/moved
stat -c '%u:%g %n' /data/new /data/newdir /data/newdir/f /data/owned /data/moved/deep
cat /data/keep /data/moved/deep";

/// What MUTATE prints: image files keep their container owners whatever the mapping.
const MUTATE_OUT: &str = "0:0 /etc/passwd
0:0 /bin/busybox
0:0 /data
0:0 /data/keep
1000:1000 /data/owned
0:0 /data/sub/deep
0:0 /data/new
0:0 /data/newdir
5:6 /data/newdir/f
7:8 /data/owned
0:0 /data/moved/deep
keep
more
deep
";

/// What /data holds after MUTATE, checked in every image and tar made from the container.
const CHECK: &str =
    "stat -c '%u:%g %n' /etc/passwd /data/new /data/newdir/f /data/owned /data/moved/deep
cat /data/new /data/keep /data/moved/deep /data/owned
test ! -e /data/del && test ! -e /data/sub && echo gone";

const CHECK_OUT: &str = "0:0 /etc/passwd
0:0 /data/new
5:6 /data/newdir/f
7:8 /data/owned
0:0 /data/moved/deep
new
keep
more
deep
owned
gone
";

/// Run a container with `ids`, make MUTATE's changes in it and check them from the inside,
/// through the mount and on disk while it runs; then, stopped: `podman diff`, `commit` (the
/// commit run with the mapping and without one), `save` (the committed layer) and `export`.
/// `extra(p, merged, upper)` checks more while the container runs.
fn run_commit_diff_export(p: &Podman, ids: &Ids, extra: impl Fn(&Podman, &str, &Path)) {
    let opts: Vec<&str> = ids.opts.iter().map(String::as_str).collect();
    let root: Vec<&str> = ids.root.iter().map(String::as_str).collect();
    let mut run = vec!["run", "-d", "--pull=never", "--name", CTR];
    run.extend(&opts);
    run.extend([BASE, "sleep", "600"]);
    p.ok(&run);

    let mut exec = vec!["exec"];
    exec.extend(&root);
    exec.extend([CTR, "sh", "-c", MUTATE]);
    assert_eq!(p.ok(&exec), MUTATE_OUT, "inside the container");

    // While it runs, the mount program serves the rootfs.
    let merged = p.inspect("container", CTR, "{{.GraphDriver.Data.MergedDir}}");
    let upper = PathBuf::from(p.inspect("container", CTR, "{{.GraphDriver.Data.UpperDir}}"));
    assert!(
        upper.starts_with(&p.dir),
        "the store is not the test's: {}",
        upper.display()
    );
    p.daemon_of(&merged);
    let checks = [
        ("etc/passwd", (0, 0)),
        ("data/new", (0, 0)),
        ("data/newdir/f", (5, 6)),
        ("data/owned", (7, 8)),
        ("data/moved/deep", (0, 0)),
    ];
    let paths: Vec<PathBuf> = checks
        .iter()
        .map(|(c, _)| Path::new(&merged).join(c))
        .collect();
    let m = &ids.mount;
    let want: Vec<(u32, u32)> = checks
        .iter()
        .map(|(_, (u, g))| (m(*u, false), m(*g, true)))
        .collect();
    assert_eq!(
        p.owners(&paths),
        want,
        "{checks:?} through the mount, from outside"
    );
    let checks = [
        ("data/new", (0, 0)),
        ("data/newdir/f", (5, 6)),
        ("data/owned", (7, 8)),
        ("data/keep", (0, 0)),
    ];
    let paths: Vec<PathBuf> = checks.iter().map(|(c, _)| upper.join(c)).collect();
    let want: Vec<(u32, u32)> = checks.iter().map(|(_, o)| *o).collect();
    assert_eq!(
        p.owners(&paths),
        want,
        "{checks:?} in the upper {}",
        upper.display()
    );
    assert_eq!(std::fs::read(upper.join("data/new")).unwrap(), b"new\n");
    // The image layer under it is untouched.
    let lower = PathBuf::from(p.inspect("image", BASE, "{{.GraphDriver.Data.UpperDir}}"));
    assert_eq!(std::fs::read(lower.join("data/keep")).unwrap(), b"keep\n");
    assert!(lower.join("data/del").exists() && lower.join("data/sub/deep").exists());
    assert_eq!(p.owners(&[lower.join("data/owned")]), [(1000, 1000)]);
    extra(p, &merged, &upper);

    p.ok(&["stop", "-t", "0", CTR]);

    // diff: /data exactly; nothing deleted elsewhere.
    let diff = p.ok(&["container", "diff", CTR]);
    let lines: BTreeSet<&str> = diff.lines().collect();
    let data: BTreeSet<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.ends_with(" /data") || l.contains(" /data/"))
        .collect();
    let want: BTreeSet<&str> = [
        "C /data",
        "A /data/new",
        "A /data/newdir",
        "A /data/newdir/f",
        "C /data/keep",
        "D /data/del",
        "C /data/owned",
        "D /data/sub",
        "A /data/moved",
        "A /data/moved/deep",
    ]
    .into();
    assert_eq!(data, want, "podman diff under /data:\n{diff}");
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("D ") && !data.contains(l)),
        "podman diff deletes something outside /data:\n{diff}"
    );

    // commit, and run the commit with the mapping and without one.
    p.ok(&["commit", "-q", CTR, "localhost/committed"]);
    let mut again = vec!["run", "--rm", "--pull=never"];
    again.extend(&opts);
    again.extend(["localhost/committed", "sh", "-c", CHECK]);
    assert_eq!(p.ok(&again), CHECK_OUT, "the commit, run with {opts:?}");
    let plain = [
        "run",
        "--rm",
        "--pull=never",
        "localhost/committed",
        "sh",
        "-c",
        CHECK,
    ];
    assert_eq!(p.ok(&plain), CHECK_OUT, "the commit, run without a mapping");

    // The committed layer as podman saves it: container ids, whiteouts for what went.
    let saved = p.path("home/committed.tar");
    p.ok(&[
        "save",
        "-q",
        "-o",
        saved.to_str().unwrap(),
        "localhost/committed",
    ]);
    let layers = saved_layers(&saved);
    assert_eq!(layers.len(), 2, "base and committed layer");
    let top = &layers[1];
    assert_tar_file(top, "data/new", (0, 0), "new\n");
    assert_tar_file(top, "data/newdir/f", (5, 6), "f\n");
    assert_tar_file(top, "data/owned", (7, 8), "owned\n");
    assert_tar_file(top, "data/keep", (0, 0), "keep\nmore\n");
    assert_tar_file(top, "data/moved/deep", (0, 0), "deep\n");
    for wh in ["data/.wh.del", "data/.wh.sub"] {
        assert!(top.contains_key(wh), "{wh} missing: {:?}", top.keys());
    }
    assert!(
        !top.contains_key("bin/busybox"),
        "the committed layer holds unchanged files"
    );

    // export: the whole tree, with the owners the store's namespace sees through the mount:
    // podman 4.3 exports the mounted rootfs without mapping ids back to the container's
    // (the kernel overlay driver gives the same 100000-owned tar for `--uidmap 0:100000:..`).
    let exported = p.path("home/export.tar");
    p.ok(&["export", "-o", exported.to_str().unwrap(), CTR]);
    let tar = tar_entries(std::fs::File::open(&exported).unwrap());
    let o = |u: u32, g: u32| (u64::from(m(u, false)), u64::from(m(g, true)));
    assert_tar_file(&tar, "data/new", o(0, 0), "new\n");
    assert_tar_file(&tar, "data/newdir/f", o(5, 6), "f\n");
    assert_tar_file(&tar, "data/owned", o(7, 8), "owned\n");
    assert_tar_file(&tar, "data/keep", o(0, 0), "keep\nmore\n");
    assert_tar_file(&tar, "data/moved/deep", o(0, 0), "deep\n");
    let bb = file(&tar, "bin/busybox");
    assert_eq!((bb.uid, bb.gid), o(0, 0), "bin/busybox owner in the export");
    assert_eq!(bb.data, std::fs::read(common::busybox()).unwrap());
    for gone in ["data/del", "data/sub", "data/sub/deep"] {
        assert!(!tar.contains_key(gone), "{gone} in the export");
    }
    p.rm(CTR);
    p.no_daemons_left();
}

#[test]
fn rootful_uidmap_run_commit_diff_export() {
    let p = Podman::rootful();
    p.import_base();
    let ids = Ids {
        opts: ["--uidmap", ROOTFUL_MAP, "--gidmap", ROOTFUL_MAP]
            .map(String::from)
            .to_vec(),
        root: vec![],
        mount: Box::new(|id, _| 100000 + id),
    };
    run_commit_diff_export(&p, &ids, |_, _, _| {});
}

/// keep-id: the user is itself inside (uid and gid), its files in the image are its own,
/// /etc is root's; root of the container is the first subordinate id.
#[test]
fn rootless_keep_id_run_commit_diff_export() {
    let p = Podman::rootless();
    let u = p.user.unwrap();
    p.import_base();
    let ids = Ids {
        opts: vec!["--userns=keep-id".into()],
        root: vec!["--user".into(), "0".into()],
        // Container id c is podman-namespace id c+1 below the user's id, 0 (the user) for
        // the user's id, c above it.
        mount: Box::new(move |id, gid| {
            let own = if gid { u.gid } else { u.uid };
            match id {
                i if i < own => i + 1,
                i if i == own => 0,
                i => i,
            }
        }),
    };
    run_commit_diff_export(&p, &ids, |p, merged, upper| {
        // As the user (keep-id's default): its own id, its files, a new file of its own.
        let (uid, gid) = (u.uid, u.gid);
        let out = p.ok(&[
            "exec",
            CTR,
            "sh",
            "-c",
            "id -u; id -g; stat -c '%u:%g %n' /etc/passwd /etc/group /home/me /home/me/mine; \
             echo x > /home/me/made; stat -c '%u:%g %n' /home/me/made; \
             touch /etc/passwd 2>/dev/null || echo denied",
        ]);
        assert_eq!(
            out,
            format!(
                "{uid}\n{gid}\n0:0 /etc/passwd\n0:0 /etc/group\n{uid}:{gid} /home/me\n\
                 {uid}:{gid} /home/me/mine\n{uid}:{gid} /home/me/made\ndenied\n"
            ),
            "the user inside its keep-id container"
        );
        // Through the mount the user's files are the user's own (podman-namespace 0)...
        let m = Path::new(merged);
        assert_eq!(
            p.owners(&[m.join("home/me/made"), m.join("home/me/mine")]),
            [(0, 0), (0, 0)]
        );
        // ... and on disk its container ids: from the host, subuid start + uid - 1.
        assert_eq!(p.owners(&[upper.join("home/me/made")]), [(uid, gid)]);
        assert_eq!(
            owner(&upper.join("home/me/made")),
            (u.ns_to_host(uid, false), u.ns_to_host(gid, true))
        );
        // Container root's copied-up /etc is the user's own on disk (podman-namespace 0).
        assert_eq!(owner(&upper.join("etc")), (u.uid, u.gid));
    });
}

/// `--uidmap 0:1:5000`: container root is the first subordinate id, not the user.
#[test]
fn rootless_uidmap_run_commit_diff_export() {
    let p = Podman::rootless();
    let u = p.user.unwrap();
    p.import_base();
    let ids = Ids {
        opts: ["--uidmap", "0:1:5000", "--gidmap", "0:1:5000"]
            .map(String::from)
            .to_vec(),
        root: vec![],
        mount: Box::new(|id, _| id + 1),
    };
    run_commit_diff_export(&p, &ids, |p, _, upper| {
        // The id map is the container's: 5000 and above do not exist in it.
        let out = p.ok(&[
            "exec",
            CTR,
            "sh",
            "-c",
            "cat /proc/self/uid_map | tr -s ' '; chown 6000 /data/new 2>/dev/null || echo refused",
        ]);
        assert_eq!(out, " 0 1 5000\nrefused\n");
        // Container root's files are the user's own on disk (podman-namespace 0).
        assert_eq!(owner(&upper.join("data/new")), (u.uid, u.gid));
        assert_eq!(
            owner(&upper.join("data/newdir/f")),
            (u.ns_to_host(5, false), u.ns_to_host(6, true))
        );
    });
}

/// The Containerfile of the build tests: create, delete a base file, rename, chown, write.
const CONTAINERFILE: &str = "FROM localhost/base:latest
RUN mkdir /built && echo one > /built/one && echo gone > /built/gone && echo keep > /built/keep
RUN rm /built/gone /data/del && mv /built/one /built/renamed && mv /data/sub /data/moved
RUN mkdir /built/d && echo in > /built/d/f && chown -R 1234:2345 /built/d && chmod 0640 /built/d/f
RUN echo two >> /built/renamed && echo more >> /data/keep && chown 7:8 /data/owned
";

const BUILT_CHECK: &str = "stat -c '%u:%g %a %n' /built /built/keep /built/renamed /built/d /built/d/f /data/keep /data/owned /data/moved/deep
cat /built/renamed /built/d/f /data/keep
ls /built; ls /data";

const BUILT_OUT: &str = "0:0 755 /built
0:0 644 /built/keep
0:0 644 /built/renamed
1234:2345 755 /built/d
1234:2345 640 /built/d/f
0:0 644 /data/keep
7:8 644 /data/owned
0:0 644 /data/moved/deep
one
two
in
keep
more
d
keep
renamed
keep
moved
owned
";

/// `podman build` of [`CONTAINERFILE`] with `opts`: the image runs with the right tree,
/// each RUN step's layer holds what it changed, and the export has content and owners.
fn build(p: &Podman, opts: &[&str]) {
    p.import_base();
    let ctx = p.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Containerfile"), CONTAINERFILE).unwrap();
    let mut args = vec!["build", "-q", "--pull=never", "--network", "none"];
    args.extend(opts);
    args.extend(["-t", "localhost/built", ctx.to_str().unwrap()]);
    p.ok(&args);

    let run = [
        "run",
        "--rm",
        "--pull=never",
        "localhost/built",
        "sh",
        "-c",
        BUILT_CHECK,
    ];
    assert_eq!(p.ok(&run), BUILT_OUT, "the built image");

    let saved = p.path("home/built.tar");
    p.ok(&[
        "save",
        "-q",
        "-o",
        saved.to_str().unwrap(),
        "localhost/built",
    ]);
    let layers = saved_layers(&saved);
    assert_eq!(layers.len(), 5, "the base and one layer per RUN step");
    let keys = |i: usize| -> BTreeSet<String> {
        layers[i]
            .keys()
            .filter(|k| k.starts_with("built") || k.starts_with("data"))
            .cloned()
            .collect()
    };
    let set = |v: &[&str]| -> BTreeSet<String> { v.iter().map(|s| s.to_string()).collect() };
    assert_eq!(
        keys(1),
        set(&["built", "built/gone", "built/keep", "built/one"])
    );
    assert_eq!(
        keys(2),
        set(&[
            "built",
            "built/.wh.gone",
            "built/.wh.one",
            "built/renamed",
            "data",
            "data/.wh.del",
            "data/.wh.sub",
            "data/moved",
            "data/moved/deep",
        ])
    );
    assert_eq!(keys(3), set(&["built", "built/d", "built/d/f"]));
    assert_eq!(
        keys(4),
        set(&["built", "built/renamed", "data", "data/keep", "data/owned"])
    );
    assert_tar_file(&layers[3], "built/d/f", (1234, 2345), "in\n");
    assert_tar_file(&layers[4], "data/owned", (7, 8), "owned\n");
    assert_tar_file(&layers[4], "built/renamed", (0, 0), "one\ntwo\n");

    p.ok(&[
        "create",
        "--pull=never",
        "--name",
        CTR,
        "localhost/built",
        "true",
    ]);
    let exported = p.path("home/export.tar");
    p.ok(&["export", "-o", exported.to_str().unwrap(), CTR]);
    let tar = tar_entries(std::fs::File::open(&exported).unwrap());
    assert_tar_file(&tar, "built/keep", (0, 0), "keep\n");
    assert_tar_file(&tar, "built/renamed", (0, 0), "one\ntwo\n");
    assert_tar_file(&tar, "built/d/f", (1234, 2345), "in\n");
    assert_eq!(file(&tar, "built/d/f").mode, 0o640);
    assert_tar_file(&tar, "data/keep", (0, 0), "keep\nmore\n");
    assert_tar_file(&tar, "data/owned", (7, 8), "owned\n");
    assert_tar_file(&tar, "data/moved/deep", (0, 0), "deep\n");
    for gone in ["built/one", "built/gone", "data/del", "data/sub"] {
        assert!(!tar.contains_key(gone), "{gone} in the export");
    }
    p.rm(CTR);
    p.no_daemons_left();
}

/// Rootful build. (Not with `--userns-uid-map`: podman 4.3 then commits each RUN step as
/// the mount shows it, in host ids, on any mount_program, fuse-overlayfs too, and the next
/// step cannot open its own /run/.containerenv.)
#[test]
fn rootful_build() {
    let p = Podman::rootful();
    build(&p, &[]);
}

/// Rootless build: RUN steps as root of podman's user namespace.
#[test]
fn rootless_build() {
    let p = Podman::rootless();
    build(&p, &[]);
}
