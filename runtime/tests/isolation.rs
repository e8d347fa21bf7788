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

mod common;
use common::{ensure_user, install_busybox, strata_bin};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/keyctl.h>

static void name(void) {
    const char *n = strerrorname_np(errno);
    printf("%s", n ? n : "E?");
}

static int err(const char *step) {
    printf("%s%s", step, *step ? " " : "");
    name();
    puts("");
    return 1;
}

/* Non-blocking: a pipe reached through /proc/PID/fd must not hang the probe. */
static int read_all(const char *path) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return err("");
    char buf[65536];
    long n = 0, r;
    while ((r = read(fd, buf, sizeof buf)) > 0 && n < (1L << 20)) n += r;
    if (r < 0) return err("");
    printf("ok %ld\n", n);
    return 0;
}

#define OK (puts("ok"), 0)

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *c = argv[1];
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(c, "read") && argc == 3) return read_all(argv[2]);
    if (!strcmp(c, "write") && argc == 3) {
        int fd = open(argv[2], O_WRONLY);
        if (fd < 0 || write(fd, "x\n", 2) != 2) return err("");
        return OK;
    }
    if (!strcmp(c, "openw") && argc == 3)
        return open(argv[2], O_WRONLY | O_NONBLOCK) < 0 ? err("") : OK;
    if (!strcmp(c, "create") && argc == 3) {
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 || write(fd, "x\n", 2) != 2) return err("");
        return OK;
    }
    if (!strcmp(c, "mknod") && argc == 6) {
        mode_t t = argv[3][0] == 'b' ? S_IFBLK : S_IFCHR;
        if (mknod(argv[2], t | 0600, makedev(atoi(argv[4]), atoi(argv[5])))) return err("mknod");
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) return err("open");
        char b;
        if (read(fd, &b, 1) < 0) return err("read");
        return OK;
    }
    if (!strcmp(c, "mount") && argc == 5) return mount(argv[2], argv[3], argv[4], 0, NULL) ? err("") : OK;
    if (!strcmp(c, "bind") && argc == 4)
        return mount(argv[2], argv[3], NULL, MS_BIND | MS_REC, NULL) ? err("") : OK;
    if (!strcmp(c, "remount-rw") && argc == 3)
        return mount(NULL, argv[2], NULL, MS_REMOUNT | MS_BIND, NULL) ? err("") : OK;
    if (!strcmp(c, "umount") && argc == 3) return umount2(argv[2], MNT_DETACH) ? err("") : OK;
    if (!strcmp(c, "chroot-escape") && argc == 4) {
        /* chroot into a subdirectory without entering it, climb out with "..", root there:
           the classic escape. It cannot climb above the mount namespace's root. */
        mkdir(argv[2], 0755);
        if (chroot(argv[2])) return err("chroot");
        for (int i = 0; i < 64; i++)
            if (chdir("..")) return err("chdir");
        if (chroot(".")) return err("chroot");
        return read_all(argv[3]);
    }
    if (!strcmp(c, "handle") && argc == 3) {
        /* "shocker": a forged handle of inode 2 (an ext4 root) opened through a descriptor
           on the host file system behind PATH. */
        struct { struct file_handle h; unsigned char b[128]; } fh;
        int mnt;
        fh.h.handle_bytes = 128;
        if (name_to_handle_at(AT_FDCWD, argv[2], &fh.h, &mnt, 0)) return err("name");
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) return err("open");
        unsigned int forged[2] = {2, 0};
        fh.h.handle_type = 1;
        fh.h.handle_bytes = 8;
        memcpy(fh.h.f_handle, forged, 8);
        if (open_by_handle_at(fd, &fh.h, O_RDONLY) < 0) return err("name ok, open_by_handle");
        return OK;
    }
    if (!strcmp(c, "sethostname") && argc == 3)
        return sethostname(argv[2], strlen(argv[2])) ? err("") : OK;
    if (!strcmp(c, "kill") && argc == 3) return kill(atoi(argv[2]), SIGKILL) ? err("") : OK;
    if (!strcmp(c, "chown") && argc == 5)
        return chown(argv[2], atoi(argv[3]), atoi(argv[4])) ? err("") : OK;
    if (!strcmp(c, "rlimit") && argc == 2) {
        struct rlimit r;
        if (getrlimit(RLIMIT_NOFILE, &r)) return err("get");
        struct rlimit up = {r.rlim_max + 1, r.rlim_max + 1};
        if (!setrlimit(RLIMIT_NOFILE, &up)) return puts("raised"), 1;
        int e = errno;
        struct rlimit down = {r.rlim_cur / 2, r.rlim_max / 2};
        if (setrlimit(RLIMIT_NOFILE, &down)) return err("lower");
        errno = e;
        return err("lower ok, raise");
    }
    if (!strcmp(c, "key") && argc == 4) {
        /* add, read or drop the key named argv[3] in the user keyring. */
        if (argv[2][0] == 'a') {
            long id = syscall(SYS_add_key, "user", argv[3], "secret", 6, KEY_SPEC_USER_KEYRING);
            return id < 0 ? err("add") : OK;
        }
        long id = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_USER_KEYRING, "user", argv[3], 0);
        if (id < 0) return err("search");
        if (argv[2][0] == 'd') return syscall(SYS_keyctl, KEYCTL_INVALIDATE, id) ? err("drop") : OK;
        char buf[64] = {0};
        if (syscall(SYS_keyctl, KEYCTL_READ, id, buf, sizeof buf - 1) < 0) return err("read");
        return printf("ok %s\n", buf), 0;
    }
    if (!strcmp(c, "ids") && argc == 2) return printf("%d %d\n", getuid(), geteuid()), 0;
    if (!strcmp(c, "userns") && argc == 5) {
        /* Every capability in a nested user namespace with its own mount and pid
           namespaces: the mounts copied there are locked (no unmask, no remount rw), and
           a new proc may not be mounted while the existing one is partly hidden. */
        mkdir(argv[4], 0755);
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID)) return err("unshare");
        pid_t p = fork();
        if (p < 0) return err("fork");
        if (p == 0) {
            printf("umount ");
            if (umount2(argv[2], MNT_DETACH)) name(); else printf("ok");
            printf(", remount-rw ");
            if (mount(NULL, argv[3], NULL, MS_REMOUNT | MS_BIND, NULL)) name(); else printf("ok");
            printf(", proc ");
            if (mount("proc", argv[4], "proc", 0, NULL)) name(); else printf("ok");
            printf(", sethostname ");
            if (sethostname("nested", 6)) name(); else printf("ok");
            puts("");
            _exit(0);
        }
        int st;
        waitpid(p, &st, 0);
        return 0;
    }
    fprintf(stderr, "probe: bad command\n");
    return 2;
}
"#;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The rootless user (created as in runtime/tests/containers.rs).
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
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("strata-iso-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
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
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
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
        let out = self.strata(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
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
    let mut a = vec!["run", "--rm"];
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

/// docker's masked paths (moby oci/defaults.go) and /proc/interrupts.
const MASKED: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// docker's read-only paths.
const READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The mask probes, by what the host has at each path: a file reads empty and refuses
/// writes, a directory lists empty and refuses new files, neither can be unmounted; a path
/// the host lacks stays absent. Every CPU's thermal_throttle directory too (docker 28).
fn mask_probes(p: &mut Probes) {
    let mut masked: Vec<String> = MASKED.iter().map(|s| s.to_string()).collect();
    for e in std::fs::read_dir("/sys/devices/system/cpu")
        .unwrap()
        .flatten()
    {
        let t = e.path().join("thermal_throttle");
        if t.is_dir() {
            masked.push(t.to_str().unwrap().to_string());
        }
    }
    for m in &masked {
        match std::fs::metadata(m) {
            Ok(md) if md.is_dir() => {
                p.add(format!("{m} lists"), format!("ls -A {m} | wc -l"), "0");
                p.add(
                    format!("{m} create"),
                    format!("probe create {m}/x"),
                    "EROFS",
                );
                p.add(format!("{m} umount"), format!("probe umount {m}"), "EPERM");
            }
            Ok(_) => {
                p.add(format!("{m} read"), format!("probe read {m}"), "ok 0");
                p.add(format!("{m} write"), format!("probe write {m}"), "EROFS");
                p.add(format!("{m} umount"), format!("probe umount {m}"), "EPERM");
                p.add(
                    format!("{m} busybox umount"),
                    format!("umount {m} >/dev/null 2>&1 || echo refused"),
                    "refused",
                );
            }
            Err(_) => p.add(format!("{m} absent"), format!("probe read {m}"), "ENOENT"),
        }
    }
}

#[test]
fn masked_and_read_only_proc_and_sys_paths() {
    let e = Env::new();
    // Positive controls on the host: the masked files have content there.
    for f in ["/proc/keys", "/proc/timer_list", "/proc/interrupts"] {
        if Path::new(f).exists() {
            let r = host_probe(&e, &["read", f]);
            assert!(r.starts_with("ok ") && r != "ok 0", "host {f}: {r}");
        }
    }
    let mut total = 0;
    for driver in ["overlay", "fuse"] {
        let mut p = Probes::default();
        mask_probes(&mut p);
        // Read-only paths: a write fails with EROFS (not a permission error), and every one
        // the host has is a read-only mount.
        p.add(
            "/proc/sys write",
            "probe write /proc/sys/kernel/domainname",
            "EROFS",
        );
        p.add(
            "/proc/irq write",
            "probe write /proc/irq/default_smp_affinity",
            "EROFS",
        );
        let sysrq = if Path::new("/proc/sysrq-trigger").exists() {
            "EROFS"
        } else {
            "ENOENT"
        };
        p.add(
            "/proc/sysrq-trigger write",
            "probe write /proc/sysrq-trigger",
            sysrq,
        );
        for r in READONLY {
            if Path::new(r).exists() {
                p.add(
                    format!("{r} mounted ro"),
                    format!("awk '$5 == \"{r}\" {{print substr($6, 1, 3)}}' /proc/self/mountinfo"),
                    "ro,",
                );
            }
        }
        p.add("/sys write", "probe create /sys/x", "EROFS");
        // Nested user namespace: every capability there, yet the masks and read-only
        // mounts are locked and no fresh proc can be mounted.
        p.add(
            "nested userns",
            "probe userns /proc/keys /proc/sys /tmp/p",
            "umount EINVAL, remount-rw EPERM, proc EPERM, sethostname EPERM",
        );
        // Positive controls: the same probes reach what is not masked.
        p.add("control read", "probe read /etc/keep", "ok 9");
        p.add("control proc write", "probe write /proc/self/comm", "ok");
        p.add(
            "control proc lists",
            "ls /proc/bus | wc -l | grep -qv '^0$' && echo listed",
            "listed",
        );
        p.add("control create", "probe create /tmp/x", "ok");
        run_probes(&e, driver, &["--driver", driver], &p);
        total += p.len();
    }
    eprintln!("masked and read-only paths: {total} probes on overlay and fuse");
}

/// Probes of the host's canary by every route, expected to fail the same way in `run` and
/// in `exec` (plus a positive control for each kind of route).
fn host_path_probes(e: &Env, p: &mut Probes) {
    let (c, d) = (e.canary(), e.cdir());
    p.add("absolute", format!("probe read {c}"), "ENOENT");
    p.add(
        "absolute dir",
        format!("ls {d} 2>&1 >/dev/null | grep -c 'No such'"),
        "1",
    );
    p.add(
        "dotdot walk",
        format!("probe read /../../../..{c}"),
        "ENOENT",
    );
    p.add(
        "cwd dotdot walk",
        format!("cd /tmp && probe read ../../../../..{c}"),
        "ENOENT",
    );
    p.add(
        "/proc/self/root",
        format!("probe read /proc/self/root{c}"),
        "ENOENT",
    );
    p.add(
        "control /proc/self/root",
        "probe read /proc/self/root/etc/keep",
        "ok 9",
    );
    p.add(
        "/proc/self/cwd",
        format!("probe read /proc/self/cwd/../../..{c}"),
        "ENOENT",
    );
    // PID 1 runs strata: non-dumpable, so neither its root nor its binary, environment
    // (the host's) or descriptors are open to the container's root.
    p.add(
        "/proc/1/root",
        format!("probe read /proc/1/root{c}"),
        "EACCES",
    );
    p.add(
        "/proc/1/root keep",
        "probe read /proc/1/root/etc/keep",
        "EACCES",
    );
    p.add("/proc/1/exe", "probe read /proc/1/exe", "EACCES");
    p.add("/proc/1/exe write", "probe openw /proc/1/exe", "EACCES");
    p.add("/proc/1/environ", "probe read /proc/1/environ", "EACCES");
    p.add("/proc/1/fd", "probe read /proc/1/fd/1", "EACCES");
    p.add(
        "host environment",
        "cat /proc/1/environ 2>/dev/null | tr '\\0' '\\n' | grep -c STRATA_ISO_HOST_SECRET",
        "0",
    );
    p.add(
        "control /proc/self/environ",
        "grep -c STRATA_ISO /proc/self/environ",
        "0",
    );
    p.add(
        "/proc/*/root",
        format!("for r in /proc/[0-9]*/root; do probe read $r{c}; done | grep -v -e ENOENT -e EACCES | wc -l"),
        "0",
    );
    p.add(
        "symlink abs",
        format!("ln -s {c} /tmp/l1 && probe read /tmp/l1"),
        "ENOENT",
    );
    p.add(
        "symlink rel",
        format!("ln -s ../../../../../../../..{c} /tmp/l2 && probe read /tmp/l2"),
        "ENOENT",
    );
    p.add(
        "symlink dir",
        format!("ln -s {d} /tmp/l3 && probe create /tmp/l3/new"),
        "ENOENT",
    );
    p.add("image symlink", "probe read /evil-link/inside", "ENOENT");
    p.add(
        "image symlink create",
        "probe create /evil-link/new",
        "ENOENT",
    );
    p.add(
        "control symlink",
        "ln -s /etc/keep /tmp/l4 && probe read /tmp/l4",
        "ok 9",
    );
    p.add("block devices", "find /dev -type b | wc -l", "0");
    p.add(
        "char devices",
        "find /dev -type c | sort | tr '\\n' ' '",
        "/dev/full /dev/null /dev/pts/ptmx /dev/random /dev/tty /dev/urandom /dev/zero",
    );
    p.add("mount proc", "probe mount proc /tmp proc", "EPERM");
    p.add(
        "busybox mount proc",
        "mkdir -p /tmp/p && mount -t proc proc /tmp/p 2>/dev/null || echo refused",
        "refused",
    );
    p.add("bind /", "mkdir -p /tmp/b && probe bind / /tmp/b", "EPERM");
    p.add(
        "busybox bind",
        "mount --bind / /tmp/b 2>/dev/null || echo refused",
        "refused",
    );
    p.add(
        "chroot escape",
        format!("probe chroot-escape /tmp/esc {c}"),
        "ENOENT",
    );
    p.add(
        "control chroot escape",
        "probe chroot-escape /tmp/esc2 /etc/keep",
        "ok 9",
    );
    // /etc/hosts is a bind of the host's file (host network): a descriptor on the host's
    // file system, the route of docker's "shocker". Without CAP_DAC_READ_SEARCH it fails.
    p.add(
        "open_by_handle_at",
        "probe handle /etc/hosts",
        "name ok, open_by_handle EPERM",
    );
}

/// A key in the host root's user keyring, dropped when the test ends.
struct HostKey<'a>(&'a Env, String);

impl Drop for HostKey<'_> {
    fn drop(&mut self) {
        host_probe(self.0, &["key", "drop", &self.1]);
        // The one a container would have added, had the filter let it.
        host_probe(self.0, &["key", "drop", &format!("{}-in", self.1)]);
    }
}

/// A host process killed when the test ends, passed or not.
struct Victim(std::process::Child);

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn host_paths_outside_the_root_are_unreachable() {
    let e = Env::new();
    let c = e.canary();
    // Positive controls on the host: the canary is there, the chroot escape works from a
    // plain chroot (the root is not a mount root there), and so does the forged handle.
    assert_eq!(host_probe(&e, &["read", &c]), "ok 7");
    let out = Command::new("chroot")
        .arg(e.dir.join("rootfs"))
        .args(["/bin/probe", "chroot-escape", "/tmp/esc", &c])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok 7");
    assert_eq!(host_probe(&e, &["handle", "/etc/hosts"]), "ok");
    // The host root's user keyring: keyrings belong to the user namespace, not to the
    // mount or pid namespaces, so only the seccomp filter keeps a rootful container out.
    let key = HostKey(&e, format!("strata-iso-{}", e.dir.display()));
    assert_eq!(host_probe(&e, &["key", "add", &key.1]), "ok");
    assert_eq!(host_probe(&e, &["key", "read", &key.1]), "ok secret");
    // A host process, not in the container's pid namespace.
    let mut victim = Victim(
        Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let vpid = victim.0.id();
    let mut total = 0;
    for driver in ["overlay", "fuse"] {
        let mut p = Probes::default();
        host_path_probes(&e, &mut p);
        p.add(
            "host keyring",
            format!("probe key read {}", key.1),
            "search EPERM",
        );
        p.add(
            "keyring add",
            format!("probe key add {}-in", key.1),
            "add EPERM",
        );
        p.add("host pid", format!("probe kill {vpid}"), "ESRCH");
        p.add(
            "host pid /proc",
            format!("ls -d /proc/{vpid} 2>/dev/null || echo hidden"),
            "hidden",
        );
        p.add(
            "pids",
            "ls -d /proc/[0-9]* | wc -l | awk '$1 < 10 {print \"few\"}'",
            "few",
        );
        run_probes(&e, &format!("{driver} run"), &["--driver", driver], &p);
        total += p.len();

        // The same through `strata exec` into a running container, and its supervisor
        // (a host process, with the host's cwd and root) out of reach.
        let name = format!("exec-{driver}");
        let id = e.ok(&[
            "run", "-d", "--name", &name, "--driver", driver, "iso", "sleep", "1000",
        ]);
        let st = Env::state(&e.dir.join("store"), id.trim());
        let sup = st["supervisor"].as_i64().unwrap();
        let mut p = Probes::default();
        host_path_probes(&e, &mut p);
        p.add(
            "supervisor /proc",
            format!("probe read /proc/{sup}/cwd{c}"),
            "ENOENT",
        );
        p.add(
            "supervisor root",
            format!("probe read /proc/{sup}/root/etc/hostname"),
            "ENOENT",
        );
        p.add("supervisor kill", format!("probe kill {sup}"), "ESRCH");
        p.add(
            "host keyring",
            format!("probe key read {}", key.1),
            "search EPERM",
        );
        let out = e.strata(&["exec", &name, "sh", "-c", &p.script()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        p.check(
            &format!("{driver} exec"),
            &String::from_utf8_lossy(&out.stdout),
        );
        total += p.len();
        e.ok(&["rm", "-f", &name]);
    }
    assert!(
        victim.0.try_wait().unwrap().is_none(),
        "the host process was killed"
    );
    drop(victim);
    assert_eq!(std::fs::read_to_string(&c).unwrap(), "secret\n");
    let listing: Vec<_> = std::fs::read_dir(e.cdir())
        .unwrap()
        .flatten()
        .map(|d| d.file_name())
        .collect();
    assert_eq!(listing, ["inside"], "the host directory changed");
    eprintln!("host paths: {total} probes on overlay and fuse (run and exec)");
}

#[test]
fn volumes_stay_within_themselves() {
    let mut e = Env::new();
    let vols = e.dir.join("vols");
    let (rw, ro, tree) = (vols.join("rw"), vols.join("ro"), vols.join("tree"));
    for d in [&rw, &ro, &tree] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("f"), "volfile\n").unwrap();
    }
    // A mount inside a volume: a read-only volume must be read-only below it too.
    e.host_tmpfs(&tree.join("mnt"));
    let c = e.canary();
    std::os::unix::fs::symlink(&c, rw.join("out-abs")).unwrap();
    std::os::unix::fs::symlink("../../host/canary", rw.join("out-rel")).unwrap();
    // Not host/cdir: the volume on /evil-link/sub below makes that path inside the root.
    let other = e.dir.join("host2");
    std::fs::create_dir_all(&other).unwrap();
    std::os::unix::fs::symlink(&other, rw.join("out-dir")).unwrap();
    assert_eq!(
        std::fs::read_to_string(rw.join("out-rel")).unwrap(),
        "secret\n"
    );
    let v = |src: &Path, dst: &str| format!("{}:{dst}", src.display());
    let mut total = 0;
    for driver in ["overlay", "fuse"] {
        let mut p = Probes::default();
        p.add("rw read", "probe read /rw/f", "ok 8");
        p.add("rw create", format!("probe create /rw/new-{driver}"), "ok");
        p.add(
            "rw dotdot",
            format!("probe create /rw/../escaped-{driver}"),
            "ok",
        );
        p.add("rw symlink abs", "probe write /rw/out-abs", "ENOENT");
        p.add("rw symlink rel", "probe read /rw/out-rel", "ENOENT");
        p.add("rw symlink dir", "probe create /rw/out-dir/x", "ENOENT");
        p.add("ro read", "probe read /ro/f", "ok 8");
        p.add("ro write", "probe write /ro/f", "EROFS");
        p.add("ro create", "probe create /ro/x", "EROFS");
        p.add("ro remount", "probe remount-rw /ro", "EPERM");
        p.add(
            "ro busybox remount",
            "mount -o remount,rw /ro 2>/dev/null || echo refused",
            "refused",
        );
        p.add("ro write after", "probe write /ro/f", "EROFS");
        p.add(
            "ro nested userns",
            "probe userns /proc/keys /ro /tmp/p",
            "umount EINVAL, remount-rw EPERM, proc EPERM, sethostname EPERM",
        );
        p.add("ro submount", "probe create /tree/mnt/x", "EROFS");
        p.add(
            "control rw submount",
            format!("probe create /treew/mnt/y-{driver}"),
            "ok",
        );
        // The image's /evil-link points at a host path: the volume lands inside the root.
        p.add(
            "target via image symlink",
            format!("probe read {}/sub/f", e.cdir()),
            "ok 8",
        );
        p.add("target via dotdot", "probe read /../../dotdot/f", "ok 8");
        let args = [
            "--driver".to_string(),
            driver.to_string(),
            "-v".into(),
            v(&rw, "/rw"),
            "-v".into(),
            v(&ro, "/ro:ro"),
            "-v".into(),
            v(&tree, "/tree:ro"),
            "-v".into(),
            v(&tree, "/treew"),
            "-v".into(),
            v(&ro, "/evil-link/sub"),
            "-v".into(),
            v(&ro, "/../../../dotdot"),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_probes(&e, driver, &args, &p);
        total += p.len();
        assert!(rw.join(format!("new-{driver}")).is_file());
        assert!(tree.join(format!("mnt/y-{driver}")).is_file());
    }
    assert_eq!(std::fs::read_to_string(&c).unwrap(), "secret\n");
    let listing: Vec<_> = std::fs::read_dir(e.cdir())
        .unwrap()
        .flatten()
        .map(|d| d.file_name())
        .collect();
    assert_eq!(listing, ["inside"], "a volume target was made on the host");
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 0);
    let mut names: Vec<_> = std::fs::read_dir(&vols)
        .unwrap()
        .flatten()
        .map(|d| d.file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["ro", "rw", "tree"], "a write left the volume");
    let mut ro_names: Vec<_> = std::fs::read_dir(&ro)
        .unwrap()
        .flatten()
        .map(|d| d.file_name())
        .collect();
    ro_names.sort();
    assert_eq!(ro_names, ["f"]);
    assert_eq!(std::fs::read_to_string(ro.join("f")).unwrap(), "volfile\n");
    assert!(!Path::new("/dotdot").exists());
    assert!(!tree.join("mnt/x").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&e.cdir()),
        "a volume was mounted on the host"
    );
    eprintln!("volumes: {total} probes on overlay and fuse");
}

/// The host disk's block device numbers (the first of /proc/partitions).
fn host_disk() -> (String, String) {
    let parts = std::fs::read_to_string("/proc/partitions").unwrap();
    parts
        .lines()
        .skip(2)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4).then(|| (f[0].to_string(), f[1].to_string()))
        })
        .unwrap_or(("8".into(), "0".into()))
}

/// The capability lines of /proc/self/status on one line.
const CAPS: &str = "awk '/^Cap/ {printf \"%s %s \", $1, $2}' /proc/self/status";

fn caps_line(set: &str, bounding: &str) -> String {
    format!(
        "CapInh: 0000000000000000 CapPrm: {set} CapEff: {set} CapBnd: {bounding} CapAmb: 0000000000000000"
    )
}

#[test]
fn capabilities_devices_hostname_and_rlimits() {
    let e = Env::new();
    // With a v1 device cgroup strata keeps docker's set (CAP_MKNOD included: the cgroup
    // refuses to open what is made); without one CAP_MKNOD goes.
    let devices = Path::new("/sys/fs/cgroup/devices/cgroup.procs").exists();
    let default = if devices {
        "00000000a80425fb"
    } else {
        "00000000a00425fb"
    };
    let (maj, min) = host_disk();
    let host_name = nix::unistd::gethostname().unwrap();
    // Positive control: the setuid bit of the image's probe works on the host.
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(e.dir.join("rootfs/bin/probe-suid"))
        .arg("ids")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "65534 0");
    let made = |ok: &str| {
        if devices {
            ok.to_string()
        } else {
            "mknod EPERM".to_string()
        }
    };
    let mut total = 0;
    for driver in ["overlay", "fuse"] {
        let mut p = Probes::default();
        p.add("caps", CAPS, &caps_line(default, default));
        p.add(
            "no_new_privs",
            "awk '/^NoNewPrivs/ {print $2}' /proc/self/status",
            "1",
        );
        p.add(
            "host disk",
            format!("probe mknod /tmp/disk b {maj} {min}"),
            &made("open EPERM"),
        );
        p.add(
            "/dev/mem",
            "probe mknod /tmp/mem c 1 1",
            &made("open EPERM"),
        );
        p.add(
            "/dev/kmsg",
            "probe mknod /tmp/kmsg c 1 11",
            &made("open EPERM"),
        );
        p.add(
            "busybox disk",
            format!("mknod /tmp/sd b {maj} {min} 2>/dev/null; head -c 1 /tmp/sd >/dev/null 2>&1 || echo refused"),
            "refused",
        );
        p.add(
            "control /dev/null node",
            "probe mknod /tmp/null c 1 3",
            &made("ok"),
        );
        p.add("sethostname", "probe sethostname evil", "EPERM");
        p.add(
            "busybox hostname",
            "hostname evil 2>/dev/null || echo refused",
            "refused",
        );
        p.add(
            "unshare uts",
            "unshare -u hostname evil 2>/dev/null || echo refused",
            "refused",
        );
        p.add("control hostname", "hostname", "box");
        p.add("kill own init", "probe kill 1", "ok");
        p.add("init survives", "kill -0 1 && echo alive", "alive");
        p.add("rlimit", "probe rlimit", "lower ok, raise EPERM");
        p.add("mount tmpfs", "probe mount tmpfs /tmp tmpfs", "EPERM");
        p.add("umount /", "probe umount /", "EPERM");
        run_probes(&e, driver, &["--driver", driver, "-h", "box"], &p);
        total += p.len();

        // A non-root user: no capabilities at all, and setuid root does nothing.
        let mut p = Probes::default();
        p.add("user caps", CAPS, &caps_line("0000000000000000", default));
        p.add("user ids", "id -u", "1000");
        p.add("setuid root", "probe-suid ids", "1000 1000");
        p.add(
            "setuid ls",
            "stat -c '%U %A' /bin/probe-suid",
            "root -rwsr-xr-x",
        );
        p.add("user mknod", "probe mknod /tmp/u c 1 3", "mknod EPERM");
        p.add("user sethostname", "probe sethostname evil", "EPERM");
        p.add(
            "user /proc/1/environ",
            "probe read /proc/1/environ",
            "EACCES",
        );
        p.add("user rlimit", "probe rlimit", "lower ok, raise EPERM");
        run_probes(
            &e,
            &format!("{driver} -u 1000"),
            &["--driver", driver, "-u", "1000"],
            &p,
        );
        total += p.len();
    }
    assert_eq!(nix::unistd::gethostname().unwrap(), host_name);
    eprintln!("capabilities, devices, hostname, rlimits: {total} probes on overlay and fuse");
}

/// Run strata as the unprivileged user [`USER`] with its store under `home`.
fn as_user(home: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid", USER, "--regid", USER, "--init-groups", "env"])
        .arg(format!("HOME={}", home.display()))
        .arg(format!("XDG_DATA_HOME={}", home.join("data").display()))
        .arg(strata_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn user_ok(home: &Path, args: &[&str]) -> String {
    let out = as_user(home, args);
    assert!(
        out.status.success(),
        "rootless strata {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The rootless user (created if missing; useradd gives it subordinate id ranges) and
/// /dev/fuse usable by it, as distributions ship it.
fn rootless_user() -> (u32, u32) {
    ensure_user(USER);
    std::fs::set_permissions("/dev/fuse", PermissionsExt::from_mode(0o666)).unwrap();
    let user = nix::unistd::User::from_name(USER).unwrap().unwrap();
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap();
    let start = subuid
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{USER}:")))
        .and_then(|r| r.split(':').next())
        .expect("a subordinate uid range for the rootless user")
        .parse()
        .unwrap();
    (user.uid.as_raw(), start)
}

#[test]
fn rootless_containers_gain_nothing_on_the_host() {
    let e = Env::new();
    let (uid, sub_start) = rootless_user();
    let home = e.dir.join("home");
    std::fs::create_dir_all(home.join("uvol")).unwrap();
    std::fs::copy(e.dir.join("iso.tar"), home.join("iso.tar")).unwrap();
    let st = Command::new("chown")
        .args(["-R", &format!("{USER}:{USER}")])
        .arg(&home)
        .status()
        .unwrap();
    assert!(st.success());
    // Root's files, readable by everyone on the host.
    let rootvol = e.dir.join("rootvol");
    std::fs::create_dir_all(&rootvol).unwrap();
    std::fs::write(rootvol.join("f"), "rootfile\n").unwrap();
    user_ok(
        &home,
        &["import", home.join("iso.tar").to_str().unwrap(), "iso"],
    );
    let c = e.canary();
    let (maj, min) = host_disk();
    let cgroup_mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some("/sys/fs/cgroup"));
    let default = "00000000a80425fb";
    let mut total = 0;
    for driver in ["overlay", "fuse"] {
        let mut p = Probes::default();
        mask_probes(&mut p);
        p.add(
            "nested userns",
            "probe userns /proc/keys /rvro /tmp/p",
            "umount EINVAL, remount-rw EPERM, proc EPERM, sethostname EPERM",
        );
        // Capabilities, relative to the user namespace.
        p.add("caps", CAPS, &caps_line(default, default));
        p.add(
            "uid map",
            "awk '{print $1, $2, $3}' /proc/self/uid_map | head -1",
            &format!("0 {uid} 1"),
        );
        p.add(
            "host disk",
            format!("probe mknod /tmp/disk b {maj} {min}"),
            "mknod EPERM",
        );
        p.add("char device", "probe mknod /tmp/null c 1 3", "mknod EPERM");
        p.add(
            "busybox mknod",
            format!("mknod /tmp/sd b {maj} {min} 2>/dev/null || echo refused"),
            "refused",
        );
        // A root-owned host directory as a volume: root in here is not root there.
        p.add("root volume owner", "stat -c %u:%g /rv/f", "65534:65534");
        p.add("control root volume read", "probe read /rv/f", "ok 9");
        p.add("root volume write", "probe write /rv/f", "EACCES");
        p.add("root volume create", "probe create /rv/new", "EACCES");
        p.add("root volume chown", "probe chown /rv/f 0 0", "EPERM");
        p.add("root volume chown dir", "probe chown /rv 0 0", "EPERM");
        p.add("ro root volume write", "probe write /rvro/f", "EACCES");
        p.add(
            "control own volume",
            "probe create /uv/mine && probe chown /uv/mine 0 0",
            "ok ok",
        );
        if cgroup_mounted {
            // The default network gives the container a network namespace (pasta), hence
            // a read-only sysfs of its own, without the host's cgroup submounts: nothing
            // to create there. (With --net host the host's /sys is bound, its submounts
            // read-only too: EROFS.)
            p.add("/sys/fs/cgroup", "probe create /sys/fs/cgroup/x", "ENOENT");
        }
        p.add("rlimit", "probe rlimit", "lower ok, raise EPERM");
        p.add("sethostname", "probe sethostname evil", "EPERM");
        p.add("keyring", "probe key add mine", "add EPERM");
        p.add("host canary", format!("probe read {c}"), "ENOENT");
        p.add(
            "/proc/self/root",
            format!("probe read /proc/self/root{c}"),
            "ENOENT",
        );
        p.add(
            "chroot escape",
            format!("probe chroot-escape /tmp/esc {c}"),
            "ENOENT",
        );
        p.add(
            "control chroot escape",
            "probe chroot-escape /tmp/esc2 /etc/keep",
            "ok 9",
        );
        let (rv, rvro, uv) = (
            format!("{}:/rv", rootvol.display()),
            format!("{}:/rvro:ro", rootvol.display()),
            format!("{}:/uv", home.join("uvol").display()),
        );
        let script = p.script();
        let out = as_user(
            &home,
            &[
                "run", "--rm", "--driver", driver, "-v", &rv, "-v", &rvro, "-v", &uv, "iso", "sh",
                "-c", &script,
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{driver}: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        p.check(&format!("rootless {driver}"), &stdout);
        total += p.len();
        assert_eq!(
            std::fs::read_to_string(rootvol.join("f")).unwrap(),
            "rootfile\n"
        );
        assert_eq!(std::fs::read_dir(&rootvol).unwrap().count(), 1);
        assert_eq!(std::fs::metadata(rootvol.join("f")).unwrap().uid(), 0);
        let mine = home.join("uvol/mine");
        assert_eq!(
            std::fs::metadata(&mine).unwrap().uid(),
            uid,
            "chown 0 is the user"
        );
        std::fs::remove_file(&mine).unwrap();

        // A non-root user inside: no capabilities, and setuid does nothing.
        let mut p = Probes::default();
        p.add("user caps", CAPS, &caps_line("0000000000000000", default));
        p.add("setuid root", "probe-suid ids", "1000 1000");
        let script = p.script();
        let out = as_user(
            &home,
            &[
                "run", "--rm", "--driver", driver, "-u", "1000", "iso", "sh", "-c", &script,
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        p.check(
            &format!("rootless {driver} -u 1000"),
            &String::from_utf8_lossy(&out.stdout),
        );
        total += p.len();

        // Seen from the host: files made by root inside belong to the user, a setuid-root
        // binary made inside is setuid to the user, uid 1000 is a subordinate id; the
        // process's capabilities hold in its own user namespace only.
        let script = "echo x > /tmp/rootfile; cp /bin/probe /tmp/suid; chmod 4755 /tmp/suid; \
                      mkdir /tmp/d; echo y > /tmp/d/f; chown -R 1000:1000 /tmp/d; \
                      touch /tmp/done; exec sleep 1000";
        let id = user_ok(
            &home,
            &["run", "-d", "--driver", driver, "iso", "sh", "-c", script],
        );
        let id = id.trim();
        let store = home.join("data/strata");
        let upper = store.join("containers").join(id).join("upper");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !upper.join("tmp/done").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{driver}: the container's files never appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let md = |p: &str| std::fs::metadata(upper.join(p)).unwrap();
        assert_eq!(md("tmp/rootfile").uid(), uid, "{driver}: root's file");
        assert_eq!(md("tmp/suid").uid(), uid, "{driver}: setuid file");
        assert_eq!(
            md("tmp/suid").mode() & 0o4000,
            0o4000,
            "{driver}: setuid bit"
        );
        assert_eq!(md("tmp/d/f").uid(), sub_start + 999, "{driver}: uid 1000");
        let pid = Env::state(&store, id)["pid"].as_i64().unwrap();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
        let cmd: i64 = children.split_whitespace().next().unwrap().parse().unwrap();
        for (what, p) in [("init", pid), ("command", cmd)] {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap();
            let field = |k: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .unwrap()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            assert_eq!(
                field("Uid:"),
                format!("{uid} {uid} {uid} {uid}"),
                "{driver} {what}"
            );
            assert_eq!(
                field("NSpid:").split(' ').next_back(),
                Some(if what == "init" { "1" } else { "2" })
            );
            if what == "command" {
                assert_eq!(field("CapEff:"), default, "{driver} {what}");
                assert_eq!(field("CapBnd:"), default, "{driver} {what}");
            }
            let ns = |p: String| std::fs::read_link(p).unwrap();
            assert_ne!(
                ns(format!("/proc/{p}/ns/user")),
                ns("/proc/self/ns/user".into()),
                "{driver} {what}: in the initial user namespace"
            );
        }
        user_ok(&home, &["rm", "-f", id]);
    }
    eprintln!(
        "rootless: {total} probes on overlay and fuse, plus host-side ownership and namespaces"
    );
}
