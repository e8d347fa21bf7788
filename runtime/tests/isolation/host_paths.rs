//! Host paths outside the root, and volumes, stay unreachable.

use super::*;

/// Probes of the host's canary by every route, expected to fail the same way in `run` and
/// in `exec` (plus a positive control for each kind of route).
pub(crate) fn host_path_probes(e: &Env, p: &mut Probes) {
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
    // PID 1 runs strata (--init): non-dumpable, so neither its root nor its binary, environment
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
pub(crate) struct HostKey<'a>(&'a Env, String);

impl Drop for HostKey<'_> {
    fn drop(&mut self) {
        host_probe(self.0, &["key", "drop", &self.1]);
        // The one a container would have added, had the filter let it.
        host_probe(self.0, &["key", "drop", &format!("{}-in", self.1)]);
    }
}

/// A host process killed when the test ends, passed or not.
pub(crate) struct Victim(pub(crate) std::process::Child);

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
            "run", "-d", "--init", "--name", &name, "--driver", driver, "iso", "sleep", "1000",
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
            "unshare EPERM",
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
        // Without the seccomp filter (which refuses it), a nested user namespace still
        // cannot make the read-only volume writable.
        let mut u = Probes::default();
        u.add(
            "ro nested userns unconfined",
            "probe userns /proc/keys /ro /tmp/p",
            "umount EINVAL, remount-rw EPERM, proc EPERM, sethostname EPERM",
        );
        let mut unconfined = args.clone();
        unconfined.extend(["--security-opt", "seccomp=unconfined"]);
        run_probes(&e, driver, &unconfined, &u);
        total += u.len();
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
