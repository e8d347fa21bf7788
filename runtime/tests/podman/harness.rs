//! The podman harness: per-test configuration and store, podman as root or as the rootless
//! user under a time limit, the base image, the daemon serving a container, cleanup.

use crate::common::{self, need};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The unprivileged user of the rootless tests.
const USER: &str = "strata-podman";
/// The base image every test imports.
pub const BASE: &str = "localhost/base:latest";
/// The test container's name: not hex, so that it never matches an image id prefix.
pub const CTR: &str = "strata-ctr";
/// The mapping of the rootful tests (as `--uidmap` and `--gidmap`).
pub const ROOTFUL_MAP: &str = "0:100000:65536";
/// Seconds one podman command may take before it is killed (`timeout -k 10`).
const PODMAN_TIMEOUT: &str = "120";

/// The mount program under test: STRATA_PODMAN_MOUNT_PROGRAM or the built strata.
fn mount_program() -> PathBuf {
    match std::env::var_os("STRATA_PODMAN_MOUNT_PROGRAM") {
        Some(p) => PathBuf::from(p),
        None => common::strata_bin(),
    }
}

/// The rootless user: ids and the start of its subordinate uid and gid ranges.
#[derive(Clone, Copy, Debug)]
pub struct User {
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// First id of its /etc/subuid range.
    pub subuid: u32,
    /// First id of its /etc/subgid range.
    pub subgid: u32,
}

impl User {
    /// A host id seen from the rootless podman's user namespace (0: the user itself,
    /// 1..: its subordinate range), uid or gid.
    pub fn ns_to_host(&self, id: u32, gid: bool) -> u32 {
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
    // As distributions ship them: rootless mounts and pasta need both.
    for dev in ["/dev/fuse", "/dev/net/tun"] {
        let meta = std::fs::metadata(dev).expect("device is missing");
        if meta.permissions().mode() & 0o666 != 0o666 {
            std::fs::set_permissions(dev, PermissionsExt::from_mode(0o666)).unwrap();
        }
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
pub struct Podman {
    /// The test directory (store, runroot, config, home).
    pub dir: PathBuf,
    /// The rootless user; None: rootful.
    pub user: Option<User>,
    /// The mount program in storage.conf (canonical).
    pub program: PathBuf,
}

impl Podman {
    /// podman as root.
    pub fn rootful() -> Podman {
        Podman::new(None)
    }

    /// podman as the rootless user.
    pub fn rootless() -> Podman {
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
        let dir = common::fresh_dir("strata-podman");
        std::fs::create_dir_all(dir.join("home/run")).unwrap();
        // The rootless user walks into the test dir (program, tars, config).
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o755)).unwrap();
        // Canonical: it is compared with /proc/PID/exe of the daemon.
        let mut program = mount_program()
            .canonicalize()
            .unwrap_or_else(|e| panic!("mount program {}: {e}", mount_program().display()));
        if let Some(u) = user {
            // The user must be able to run the program: the workspace may sit under a
            // private home (/root). Then a hard link (or copy) inside the test dir does.
            let runs = Command::new("setpriv")
                .args([
                    "--reuid",
                    USER,
                    "--regid",
                    USER,
                    "--init-groups",
                    "test",
                    "-x",
                ])
                .arg(&program)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !runs {
                let bin = dir.join("bin");
                std::fs::create_dir_all(&bin).unwrap();
                let linked = bin.join(program.file_name().unwrap());
                if std::fs::hard_link(&program, &linked).is_err() {
                    std::fs::copy(&program, &linked).unwrap();
                }
                program = linked;
            }
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

    /// A path in the test directory.
    pub fn path(&self, p: &str) -> PathBuf {
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
    pub fn ok(&self, args: &[&str]) -> String {
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
    pub fn inspect(&self, kind: &str, what: &str, format: &str) -> String {
        self.ok(&[kind, "inspect", "--format", format, what])
            .trim()
            .to_string()
    }

    /// Import the base image: busybox plus /data (keep, del, owned by 1000:1000, sub/deep)
    /// and, rootless, /home/me owned by the user with a file `mine` in it.
    pub fn import_base(&self) {
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
    /// `fuse.NAME` mount with source NAME, NAME the program's (strata: `fuse.strata strata`).
    pub fn daemon_of(&self, merged: &str) -> i32 {
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
        // Type fuse.SUBTYPE and source the program's name, as fuse-overlayfs shows
        // (`fuse.fuse-overlayfs fuse-overlayfs`): `findmnt -t fuse.strata` finds them.
        assert!(
            tail[0] == format!("fuse.{fsname}") && tail[1] == fsname,
            "{merged} is not a fuse.{fsname} mount: {line}"
        );
        pid
    }

    /// `podman rm NAME`. podman 4.3 often fails removing a stopped user-namespaced
    /// container with "userdata/shm: device or resource busy" and removes it all the same
    /// (the kernel overlay driver too, about every second time with `--uidmap`): that one
    /// error is accepted once the container is gone.
    pub fn rm(&self, name: &str) {
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
    pub fn no_daemons_left(&self) {
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
    pub fn owners(&self, paths: &[PathBuf]) -> Vec<(u32, u32)> {
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

/// Owner (uid, gid) of a path on the host.
pub fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}
