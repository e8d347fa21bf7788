//! Rootless containers gain nothing on the host.

use super::*;

/// Run strata as the unprivileged user [`USER`] with its store under `home`.
pub(crate) fn as_user(home: &Path, args: &[&str]) -> Output {
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

pub(crate) fn user_ok(home: &Path, args: &[&str]) -> String {
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
pub(crate) fn rootless_user() -> (u32, u32) {
    ensure_user(USER);
    common::rootless_devices();
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
        // Refused by docker's default seccomp profile (the rootful tests probe it unconfined).
        p.add(
            "nested userns",
            "probe userns /proc/keys /rvro /tmp/p",
            "unshare EPERM",
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
            // --init: the checks below look at strata's init and at its child, the command.
            &[
                "run", "-d", "--init", "--driver", driver, "iso", "sh", "-c", script,
            ],
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
