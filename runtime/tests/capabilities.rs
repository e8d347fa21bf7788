//! Capabilities the docker way (issue 16): docker's default set for root and for other
//! users, `--cap-add`/`--cap-drop` with docker's names and ALL, the seccomp rules that follow
//! the capabilities, `--privileged` and `--device`. Read from /proc/self/status inside real
//! containers of a busybox image (Debian's busybox-static).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::store_env::StoreEnv;
use std::path::Path;
use std::process::Command;

/// A store with `caps`: busybox, a user bob, and /bin/busybox-cap carrying a file
/// capability.
struct Env(StoreEnv);

impl std::ops::Deref for Env {
    type Target = StoreEnv;
    fn deref(&self) -> &StoreEnv {
        &self.0
    }
}

impl Env {
    fn new() -> Env {
        let env = StoreEnv::bare("caps");
        env.write_rootfs(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000:bob:/:/bin/sh\n",
        );
        env.write_rootfs("etc/group", "root:x:0:\nbob:x:1000:\n");
        // A busybox with a file capability (CAP_NET_RAW, effective): vfs_cap_data v2.
        let capbox = env.rootfs().join("bin/busybox-cap");
        std::fs::copy(common::busybox(), &capbox).unwrap();
        let st = Command::new("setfattr")
            .args(["-n", "security.capability", "-v"])
            .arg("0x0100000200200000000000000000000000000000")
            .arg(&capbox)
            .status()
            .unwrap();
        assert!(st.success(), "setfattr security.capability");
        env.import_rootfs("caps", &[]);
        Env(env)
    }

    fn run_caps(&self, opts: &[&str], script: &str) -> (i32, String, String) {
        let mut a = vec!["run", "--rm"];
        a.extend(opts);
        a.extend(["caps", "sh", "-c", script]);
        let out = self.strata(&a);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// "CapInh CapPrm CapEff CapBnd CapAmb" of the container's command, as hex masks.
    fn caps(&self, opts: &[&str]) -> [u64; 5] {
        let (code, out, err) = self.run_caps(opts, "grep ^Cap /proc/self/status");
        assert_eq!(code, 0, "{opts:?}: {err}");
        let v: Vec<u64> = out
            .lines()
            .map(|l| u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap())
            .collect();
        [v[0], v[1], v[2], v[3], v[4]]
    }
}

/// docker's default set (capability.h numbers); CAP_MKNOD (27) only where a v1 device cgroup
/// refuses to open what is made (see isolation::caps::set_of).
fn default_set() -> u64 {
    let mut bits = [0u32, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 29, 31].to_vec();
    if Path::new("/sys/fs/cgroup/devices/cgroup.procs").exists() {
        bits.push(27);
    }
    bits.iter().fold(0, |m, b| m | 1 << b)
}

/// What strata itself has (the most a container can get).
fn host_permitted() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("CapPrm:")).unwrap();
    u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

const SYS_ADMIN: u64 = 1 << 21;
const NET_ADMIN: u64 = 1 << 12;
const CHOWN: u64 = 1;

#[test]
fn docker_default_set_and_cap_add_cap_drop_with_docker_names() {
    let e = Env::new();
    let d = default_set();
    // root: inheritable and ambient empty, the set everywhere else.
    assert_eq!(e.caps(&[]), [0, d, d, d, 0]);
    // Any other user: the same bounding set, nothing in effect.
    assert_eq!(e.caps(&["-u", "1000"]), [0, 0, 0, d, 0]);
    assert_eq!(e.caps(&["-u", "bob"]), [0, 0, 0, d, 0]);
    // ... unless a file grants some: a file capability within the bounding set works.
    // From a shell (a process with no capabilities), only without no_new_privs, which keeps
    // an exec from gaining any: docker's default, strata's opt-out.
    let script = "busybox-cap grep CapEff /proc/self/status";
    let (_, out, _) = e.run_caps(&["-u", "1000"], script);
    assert_eq!(out, "CapEff:\t0000000000000000\n", "no_new_privs");
    let (_, out, _) = e.run_caps(
        &["-u", "1000", "--security-opt", "no-new-privileges=false"],
        script,
    );
    assert_eq!(out, "CapEff:\t0000000000002000\n", "without no_new_privs");
    // As the container's command it had the set in its permitted set before exec, so even
    // no_new_privs lets the file's capability through (as with docker).
    let grep = ["caps", "busybox-cap", "grep", "CapEff", "/proc/self/status"];
    let out = e.strata(&[&["run", "--rm", "-u", "1000"][..], &grep].concat());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "CapEff:\t0000000000002000\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Outside the bounding set the kernel refuses to run it (as with docker).
    let drop = ["run", "--rm", "-u", "1000", "--cap-drop", "NET_RAW"];
    let out = e.strata(&[&drop[..], &grep].concat());
    assert!(
        !out.status.success(),
        "a file capability outside the bounding set must not run"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Operation not permitted"), "{err}");
    assert_eq!(e.caps(&["--cap-add", "NET_ADMIN"])[2], d | NET_ADMIN);
    assert_eq!(e.caps(&["--cap-add", "cap_net_admin"])[3], d | NET_ADMIN);
    assert_eq!(e.caps(&["--cap-add", "Net_Admin"])[1], d | NET_ADMIN);
    assert_eq!(e.caps(&["--cap-drop", "CHOWN"])[2], d & !CHOWN);
    assert_eq!(e.caps(&["--cap-drop", "ALL"]), [0, 0, 0, 0, 0]);
    let only = e.caps(&["--cap-drop", "all", "--cap-add", "chown"]);
    assert_eq!(only, [0, CHOWN, CHOWN, CHOWN, 0]);
    let all = host_permitted();
    assert_eq!(e.caps(&["--cap-add", "ALL"]), [0, all, all, all, 0]);
    assert_eq!(
        e.caps(&["--cap-add", "ALL", "--cap-drop", "SYS_ADMIN"])[3],
        all & !SYS_ADMIN
    );
    // A user switch still works with CAP_SETUID/SETGID dropped (as runc does it).
    let (code, out, err) = e.run_caps(
        &["--cap-drop", "SETUID", "--cap-drop", "SETGID", "-u", "1000"],
        "id -u",
    );
    assert_eq!((code, out.trim()), (0, "1000"), "{err}");
    // A dropped capability is gone: chown refused.
    let (code, _, _) = e.run_caps(&["--cap-drop", "CHOWN"], "touch /tmp/f; chown 1000 /tmp/f");
    assert_ne!(code, 0, "chown without CAP_CHOWN must fail");
    // Unknown names: one line, nothing created.
    for bad in ["FOO", "CAP_", "SYS_ADMINX"] {
        let (code, _, err) = e.run_caps(&["--cap-add", bad], "true");
        assert_ne!(code, 0);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("unknown capability"), "{err}");
        let (code, _, err) = e.run_caps(&["--cap-drop", bad], "true");
        assert_ne!(code, 0);
        assert!(err.contains("unknown capability"), "{err}");
    }
    assert_eq!(e.containers(), 0);
}

#[test]
fn seccomp_rules_follow_the_capabilities() {
    let e = Env::new();
    // mount and unshare are allowed by the default profile only with CAP_SYS_ADMIN.
    let script = "mkdir -p /tmp/m; mount -t tmpfs t /tmp/m && echo mounted; unshare -U true && echo unshared";
    let (_, out, _) = e.run_caps(&[], script);
    assert_eq!(out, "", "without CAP_SYS_ADMIN");
    let (code, out, err) = e.run_caps(&["--cap-add", "SYS_ADMIN"], script);
    assert_eq!((code, out.as_str()), (0, "mounted\nunshared\n"), "{err}");
}

#[test]
fn privileged_and_devices() {
    let e = Env::new();
    let all = host_permitted();
    let script = "grep -E '^(CapBnd|Seccomp):' /proc/self/status; \
                  test -c /dev/loop-control && echo loop-control; \
                  grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; \
                  test \"$(head -c 1 /proc/timer_list | wc -c)\" = 1 && echo unmasked; true";
    let (code, out, err) = e.run_caps(&["--privileged"], script);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("CapBnd:\t{all:016x}\nSeccomp:\t0\nloop-control\nrw\nunmasked\n")
    );
    // The control: none of it without --privileged.
    let (_, out, _) = e.run_caps(&[], script);
    assert_eq!(
        out,
        format!("CapBnd:\t{:016x}\nSeccomp:\t2\nro\n", default_set())
    );
    // --device: the node, under another name, with the cgroup's permissions where a v1
    // device cgroup exists (r: opening it for writing is refused).
    let (code, out, err) = e.run_caps(
        &["--device", "/dev/loop-control:/dev/lc"],
        "stat -c '%t:%T' /dev/lc; test -e /dev/loop-control || echo only-lc",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "a:ed\nonly-lc\n");
    if Path::new("/sys/fs/cgroup/devices/cgroup.procs").exists() {
        let (_, out, err) = e.run_caps(
            &["--device", "/dev/loop-control:/dev/lc:r"],
            "(true >/dev/lc) && echo wrote; (true </dev/lc) && echo read",
        );
        assert_eq!(out, "read\n", "{err}");
        assert!(err.contains("Operation not permitted"), "{err}");
    } else {
        eprintln!("no v1 device cgroup here: --device permissions are not enforced (cgroup v2 needs eBPF)");
    }
    for (bad, want) in [
        ("/etc/passwd", "not a device node"),
        ("/dev/nonexistent", "cannot use --device"),
        ("/dev/null:/dev/n:rwx", "must be letters of rwm"),
    ] {
        let (code, _, err) = e.run_caps(&["--device", bad], "true");
        assert_ne!(code, 0);
        assert!(err.contains(want), "{bad}: {err}");
    }
    assert_eq!(e.containers(), 0);
}
