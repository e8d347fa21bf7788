//! What a container sees: exit statuses, env, /proc masks, volumes, network, limits, /etc files, PID 1.

use super::*;

#[test]
fn echo_and_exit_statuses() {
    let e = Env::new();
    assert_eq!(
        e.run(&["busybox", "echo", "hello"]),
        (0, "hello\n".into(), String::new())
    );
    assert_eq!(e.run(&["busybox", "sh", "-c", "exit 3"]).0, 3);
    // A command killed by a signal: 128+N. Behind --init (as PID 1 the kernel ignores
    // signals it has no handler for, from inside its namespace too: run_flags.rs).
    assert_eq!(
        e.run(&["--init", "busybox", "sh", "-c", "kill -9 $$"]).0,
        137
    );
    assert_eq!(
        e.run(&["--init", "busybox", "sh", "-c", "kill -TERM $$"]).0,
        143
    );
    let (code, _, err) = e.run(&["busybox", "no-such-command"]);
    assert_eq!(code, 127);
    assert!(err.contains("executable file not found"), "{err}");
    // The image's CMD is used when none is given.
    let out = Command::new(strata_bin())
        .arg("--root")
        .arg(e.root())
        .args(["run", "--rm", "-i", "busybox"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(b"echo from-stdin; exit 5\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-stdin\n");
}

#[test]
fn env_workdir_user_hostname_pid1() {
    let e = Env::new();
    let (code, out, err) = e.run(&[
        "-e",
        "A=1",
        "-w",
        "/work/dir",
        "-u",
        "bob",
        "-h",
        "box",
        "busybox",
        "sh",
        "-c",
        "echo $A $PWD $(id -u) $(id -g) $(id -G) $(hostname) $HOME $$; echo $PATH",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    // The command is PID 1, as with docker.
    assert_eq!(lines[0], "1 /work/dir 1000 1000 1000 10 box /home/bob 1");
    assert_eq!(
        lines[1],
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    let (_, out, _) = e.run(&[
        "-u",
        "4242:7",
        "busybox",
        "sh",
        "-c",
        "echo $(id -u):$(id -g)",
    ]);
    assert_eq!(out, "4242:7\n");
    let (code, _, err) = e.run(&["-u", "nobody-here", "busybox", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("unable to find user"), "{err}");
}

#[test]
fn proc_masks_caps_and_isolation() {
    let e = Env::new();
    let script = "grep CapBnd /proc/self/status; grep NoNewPrivs /proc/self/status; \
                  if echo x > /proc/sys/kernel/domainname; then echo proc-sys-writable; fi; \
                  wc -c < /proc/timer_list 2>/dev/null || echo 0; ls /proc/acpi 2>/dev/null | wc -l; \
                  ls /dev | tr '\\n' ' '; echo; \
                  if touch /sys/x 2>/dev/null; then echo sys-writable; fi; \
                  ls / | tr '\\n' ' '";
    let (code, out, err) = e.run(&["busybox", "sh", "-c", script]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    // Docker's set; CAP_MKNOD only where a v1 device cgroup refuses to open what is made.
    let bounding = match Path::new("/sys/fs/cgroup/devices/cgroup.procs").exists() {
        true => "00000000a80425fb",
        false => "00000000a00425fb",
    };
    assert_eq!(lines[0], format!("CapBnd:\t{bounding}"));
    assert_eq!(lines[1], "NoNewPrivs:\t1");
    assert!(!out.contains("writable"), "{out}");
    assert_eq!(lines[2].trim(), "0", "/proc/timer_list must read empty");
    assert_eq!(lines[3].trim(), "0", "/proc/acpi must be empty");
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "mqueue",
    ] {
        assert!(
            lines[4].split(' ').any(|x| x == d),
            "/dev lacks {d}: {}",
            lines[4]
        );
    }
    // The host's files are not visible: only the image's top-level directories.
    assert!(
        !lines[5].contains("work") && !lines[5].contains("var"),
        "{}",
        lines[5]
    );
}

#[test]
fn volumes_ro_and_rw() {
    let e = Env::new();
    let vol = e.dir.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("f"), "hostfile\n").unwrap();
    let ro = format!("{}:/data:ro", vol.display());
    let (code, out, _) = e.run(&[
        "-v",
        &ro,
        "busybox",
        "sh",
        "-c",
        "cat /data/f; echo x > /data/g",
    ]);
    assert_ne!(code, 0);
    assert_eq!(out, "hostfile\n");
    assert!(!vol.join("g").exists());
    let rw = format!("{}:/data", vol.display());
    let (code, _, err) = e.run(&["-v", &rw, "busybox", "sh", "-c", "echo y > /data/g"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(vol.join("g")).unwrap(), "y\n");
}

#[test]
fn net_none_has_only_loopback() {
    let e = Env::new();
    let (code, out, err) = e.run(&["--net", "none", "busybox", "ls", "/sys/class/net"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "lo\n");
}

#[test]
fn pids_limit_bounds_a_fork_bomb() {
    let e = Env::new();
    let (code, _, err) = e.run(&[
        "--pids-limit",
        "16",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 64 ]; do sleep 60 & i=$((i+1)); done",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("can't fork"), "{err}");
}

#[test]
fn etc_hostname_hosts_and_resolv_conf() {
    let e = Env::new();
    let host = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let script = "cat /etc/hostname /etc/resolv.conf /etc/hosts; \
                  if echo x >> /etc/hosts 2>/dev/null; then echo hosts-writable; fi; \
                  if echo x >> /etc/resolv.conf 2>/dev/null; then echo resolv-writable; fi";
    for driver in ["overlay", "fuse"] {
        // --net host: the host's files, read-only.
        let (code, out, err) = e.run(&[
            "--driver", driver, "--net", "host", "-h", "box", "busybox", "sh", "-c", script,
        ]);
        assert_eq!(code, 0, "{driver}: {err}");
        assert_eq!(
            out,
            format!("box\n{}{}", host("/etc/resolv.conf"), host("/etc/hosts")),
            "{driver}"
        );
        // --net none: localhost and the container's name.
        let (code, out, err) = e.run(&[
            "--driver",
            driver,
            "--net",
            "none",
            "-h",
            "box",
            "busybox",
            "sh",
            "-c",
            "cat /etc/hostname /etc/hosts; ping -c1 -W5 box >/dev/null && echo box-resolves",
        ]);
        assert_eq!(code, 0, "{driver}: {err}");
        assert_eq!(
            out,
            "box\n127.0.0.1\tlocalhost box\n::1\tlocalhost ip6-localhost ip6-loopback box\nbox-resolves\n",
            "{driver}"
        );
        // The mount points are not the container's changes, and not committed.
        let name = format!("quiet-{driver}");
        e.ok(&[
            "run", "--name", &name, "--driver", driver, "busybox", "true",
        ]);
        assert_eq!(e.ok(&["diff", &name]), "", "{driver}");
        let img = format!("quiet-{driver}");
        e.ok(&["commit", &name, &img]);
        let (_, out, _) = e.run(&["--net", "host", &img, "sh", "-c", "cat /etc/hosts"]);
        assert_eq!(out, host("/etc/hosts"));
        e.ok(&["rm", &name]);
    }
}

#[test]
fn init_is_pid_1_and_reaps_orphans() {
    let e = Env::new();
    // With --init, PID 1 is strata's init (named as docker's); the command is its child.
    let (code, out, err) = e.run(&[
        "--init",
        "busybox",
        "sh",
        "-c",
        "cat /proc/1/comm; echo $$ $PPID; cat /proc/$$/comm; true",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "docker-init\n2 1\nsh\n");
    // Orphans (double-forked children) are reparented to init, which must reap them when
    // they exit: poll inside until no sleep is left at all, then count zombies.
    let script = "for i in 1 2 3 4 5; do (sleep 0.2 &); done; \
                  n=0; while ps -o comm | grep -q sleep && [ $n -lt 300 ]; do sleep 0.05; n=$((n+1)); done; \
                  ps -o stat,comm | grep -c '^ *Z'";
    let (_, out, err) = e.run(&["--init", "busybox", "sh", "-c", script]);
    assert_eq!(out.trim(), "0", "zombies left: {err}");
}

#[test]
fn memory_limit_kills_a_hog() {
    let e = Env::new();
    // dd's 200 MiB buffer cannot fit in 32 MiB: the OOM killer ends it (SIGKILL).
    let (code, _, err) = e.run(&[
        "--memory",
        "32m",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=200M",
        "count=1",
    ]);
    assert_eq!(code, 137, "{err}");
    // Without the limit it runs.
    let (code, _, err) = e.run(&[
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=200M",
        "count=1",
    ]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn host_files_outside_the_root_are_invisible() {
    let e = Env::new();
    let canary = e.dir.join("canary-host-only");
    std::fs::write(&canary, "secret\n").unwrap();
    let c = canary.to_str().unwrap();
    let dir = e.dir.to_str().unwrap();
    for driver in ["overlay", "fuse"] {
        let script = format!(
            "ls {c} {dir} 2>/dev/null && echo listed; cat {c} 2>/dev/null && echo read; \
             cat /../../..{c} /proc/1/root{c} /proc/self/root{c} 2>/dev/null && echo read-via-path; \
             find / -xdev -name canary-host-only 2>/dev/null; echo done"
        );
        let (code, out, err) = e.run(&["--driver", driver, "busybox", "sh", "-c", &script]);
        assert_eq!(code, 0, "{driver}: {err}");
        assert_eq!(out, "done\n", "{driver}: the host's file is visible");
    }
}
