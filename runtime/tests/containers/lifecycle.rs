//! Container lifecycle: detached runs, logs, stop/start/kill/rm, exec with a tty, drivers, parallel runs, tracing.

use super::*;

pub(crate) fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    ["memory", "pids", "cpu", "devices"]
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c).join("strata").join(id))
        .chain([Path::new("/sys/fs/cgroup/strata").join(id)])
        .collect()
}

#[test]
fn detached_logs_stop_start_kill_rm_and_cgroups() {
    let e = Env::new();
    let script = "echo started; trap 'echo got TERM; exit 7' TERM; while true; do sleep 0.1; done";
    let id = e.ok(&[
        "run", "-d", "--name", "web", "--memory", "64m", "--cpus", "0.5", "busybox", "sh", "-c",
        script,
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64);
    let limit = ["/sys/fs/cgroup/memory/strata", "/sys/fs/cgroup/strata"]
        .iter()
        .find_map(|d| {
            let d = Path::new(d).join(&id);
            std::fs::read_to_string(d.join("memory.limit_in_bytes"))
                .or_else(|_| std::fs::read_to_string(d.join("memory.max")))
                .ok()
        })
        .expect("the container's memory cgroup");
    assert_eq!(limit.trim(), "67108864");
    poll("the log", || e.ok(&["logs", "web"]).contains("started"));
    assert!(e.ok(&["ps"]).contains("web"));
    assert_eq!(e.ok(&["exec", "web", "hostname"]).trim(), &id[..12]);
    assert_eq!(
        e.strata(&["exec", "web", "sh", "-c", "exit 4"])
            .status
            .code(),
        Some(4)
    );
    e.ok(&["stop", "web"]);
    assert!(e.ok(&["logs", "web"]).contains("got TERM"));
    let ps = e.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (7)"), "{ps}");
    assert!(!e.ok(&["ps"]).contains("web"));
    for d in cgroup_dirs(&id) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    e.ok(&["start", "web"]);
    assert!(e.ok(&["ps"]).contains("web"));
    e.ok(&["kill", "web"]);
    poll("the exit", || e.ok(&["ps", "-a"]).contains("Exited (137)"));
    let out = e.strata(&["run", "--name", "web", "busybox", "true"]);
    assert!(!out.status.success(), "duplicate names must be refused");
    e.ok(&["rm", "web"]);
    assert!(!e.ok(&["ps", "-a"]).contains("web"));
    assert!(!e.root().join("containers").join(&id).exists());
}

/// `logs -f` prints what the container writes while it runs and returns once it exits,
/// with the lines written last.
#[test]
fn logs_follow_until_exit() {
    let e = Env::new();
    let script = "echo one; i=0; while [ ! -e /tmp/go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; echo two";
    e.ok(&["run", "-d", "--name", "f", "busybox", "sh", "-c", script]);
    poll("the first line", || e.ok(&["logs", "f"]).contains("one"));
    let mut follow = Command::new(strata_bin())
        .arg("--root")
        .arg(e.root())
        .args(["logs", "-f", "f"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).map(|_| out)
    });
    // Still following: the container has not exited.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        follow.try_wait().unwrap().is_none(),
        "logs -f returned early"
    );
    e.ok(&["exec", "f", "touch", "/tmp/go"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while follow.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = follow.kill();
            panic!("logs -f did not return after the container exited");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(follow.wait().unwrap().success());
    assert_eq!(reader.join().unwrap().unwrap(), "one\ntwo\n");
}

#[test]
fn rm_force_kills_a_running_container() {
    let e = Env::new();
    let id = e.ok(&["run", "-d", "busybox", "sleep", "1000"]);
    let id = id.trim();
    let out = e.strata(&["rm", id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rm -f"));
    e.ok(&["rm", "-f", id]);
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
    for d in cgroup_dirs(id) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn fuse_driver_runs_a_container() {
    let e = Env::new();
    let (code, out, err) = e.run(&[
        "--driver",
        "fuse",
        "busybox",
        "sh",
        "-c",
        "echo hi > /tmp/x; cat /tmp/x /etc/keep",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hi\noriginal\n");
}

#[test]
fn info_names_the_driver_and_why() {
    let e = Env::new();
    let out = e.ok(&["info"]);
    assert!(out.contains("Storage driver: "), "{out}");
    assert!(out.contains("Driver reason: "), "{out}");
    assert!(out.contains(&e.root().display().to_string()));
}

/// The trace's JSON lines.
pub(crate) fn trace_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn run_trace_records_the_containers_reads_and_writes() {
    let e = Env::new();
    let trace = e.dir.join("ops.jsonl");
    let t = trace.to_str().unwrap();
    // auto picks strata's union when tracing.
    let (code, out, err) = e.run(&[
        "--trace",
        t,
        "busybox",
        "sh",
        "-c",
        "cat /etc/keep; echo hi > /tmp/out",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "original\n");
    // Complete when run returns: the last line is the end line.
    let lines = trace_lines(&trace);
    assert_eq!(lines.last().unwrap()["op"], "trace_end", "{lines:?}");
    assert!(
        lines.iter().any(|l| l["op"] == "read"
            && l["path"] == "/etc/keep"
            && l["branch"] == "lower 0"
            && l["size"] == 9),
        "no read of /etc/keep from the image: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l["op"] == "write"
            && l["path"] == "/tmp/out"
            && l["branch"] == "upper"
            && l["size"] == 3),
        "no write of /tmp/out into the upper: {lines:?}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&e.ok(&["trace", "summary", "--json", t])).unwrap();
    assert_eq!(summary["complete"], true);
    assert!(summary["groups"]["read"]["count"].as_u64().unwrap() >= 1);
    assert!(summary["groups"]["write"]["count"].as_u64().unwrap() >= 1);
    let text = e.ok(&["trace", "summary", t]);
    for op in ["read", "write"] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{op} "))),
            "{text}"
        );
    }
    // Filters: only these ops, only these paths.
    let (code, _, err) = e.run(&[
        "--driver",
        "fuse",
        "--trace",
        t,
        "--trace-ops",
        "read,write",
        "--trace-path",
        "/tmp/**",
        "busybox",
        "sh",
        "-c",
        "cat /etc/keep >/dev/null; echo hi > /tmp/out; cat /tmp/out >/dev/null",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines = trace_lines(&trace);
    let ops: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["op"] != "trace_end")
        .map(|l| (l["op"].as_str().unwrap(), l["path"].as_str().unwrap()))
        .collect();
    assert_eq!(ops, [("write", "/tmp/out"), ("read", "/tmp/out")]);
    // The kernel's overlayfs cannot be traced: refused in one line.
    let (code, _, err) = e.run(&["--driver", "overlay", "--trace", t, "busybox", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("--trace needs strata's FUSE union"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn exec_tty_is_a_pty_of_the_containers_own_devpts() {
    let e = Env::new();
    let id = e.ok(&["run", "-d", "--name", "tt", "busybox", "sleep", "1000"]);
    let out = e.ok(&["exec", "-t", "tt", "sh", "-c", "tty; ls -1 /dev/pts"]);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let n = lines[0]
        .strip_prefix("/dev/pts/")
        .unwrap_or_else(|| panic!("tty printed {out:?}"));
    assert!(
        lines[1..].contains(&n),
        "not in the container's devpts: {out:?}"
    );
    // The terminal belongs to the user the process runs as.
    let out = e.ok(&[
        "exec",
        "-t",
        "-u",
        "1000",
        "tt",
        "sh",
        "-c",
        "stat -c %u $(tty)",
    ]);
    assert_eq!(out.trim(), "1000");
    let out = e.strata(&["exec", "tt", "tty"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "not a tty");
    e.ok(&["rm", "-f", id.trim()]);
    // run -t too: the container's first pty, also its /dev/console, owned by the -u user.
    let (code, out, err) = e.run(&[
        "-t",
        "-u",
        "1000",
        "busybox",
        "sh",
        "-c",
        "tty; stat -c '%u %t:%T' $(tty) /dev/console",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "/dev/pts/0\r\n1000 88:0\r\n1000 88:0\r\n");
}

#[test]
fn parallel_runs_of_the_same_image_on_both_drivers() {
    let e = Env::new();
    for driver in ["overlay", "fuse"] {
        let results: Vec<(usize, (i32, String, String))> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let e = &e;
                    s.spawn(move || {
                        let script = format!("echo run-{i} > /tmp/me; cat /tmp/me /etc/keep");
                        (
                            i,
                            e.run(&["--driver", driver, "busybox", "sh", "-c", &script]),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, (code, out, err)) in results {
            assert_eq!(code, 0, "{driver} run {i}: {err}");
            assert_eq!(out, format!("run-{i}\noriginal\n"), "{driver} run {i}");
        }
    }
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "", "--rm left containers behind");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(e.root().to_str().unwrap()), "{mounts}");
}
