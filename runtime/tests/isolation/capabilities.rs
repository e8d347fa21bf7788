//! Capabilities, devices, hostname and rlimits of a container.

use super::*;

/// The host disk's block device numbers (the first of /proc/partitions).
pub(crate) fn host_disk() -> (String, String) {
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
pub(crate) const CAPS: &str = "awk '/^Cap/ {printf \"%s %s \", $1, $2}' /proc/self/status";

pub(crate) fn caps_line(set: &str, bounding: &str) -> String {
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
