//! Masked and read-only /proc and /sys paths.

use super::*;

/// docker's masked paths (moby oci/defaults.go) and /proc/interrupts.
pub(crate) const MASKED: [&str; 12] = [
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
pub(crate) const READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The mask probes, by what the host has at each path: a file reads empty and refuses
/// writes, a directory lists empty and refuses new files, neither can be unmounted; a path
/// the host lacks stays absent. Every CPU's thermal_throttle directory too (docker 28).
pub(crate) fn mask_probes(p: &mut Probes) {
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
        // docker's default seccomp profile refuses the nested user namespace outright; what
        // one could do there is probed below with the filter off.
        p.add(
            "nested userns",
            "probe userns /proc/keys /proc/sys /tmp/p",
            "unshare EPERM",
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
        let mut u = Probes::default();
        u.add(
            "nested userns unconfined",
            "probe userns /proc/keys /proc/sys /tmp/p",
            "umount EINVAL, remount-rw EPERM, proc EPERM, sethostname EPERM",
        );
        let unconfined = ["--driver", driver, "--security-opt", "seccomp=unconfined"];
        run_probes(&e, driver, &unconfined, &u);
        total += u.len();
    }
    eprintln!("masked and read-only paths: {total} probes on overlay and fuse");
}
