//! PID 1 the docker way: the container's command is PID 1 (exec'd, not a child of a host
//! strata process), `--init` puts strata's reaper in front of it under docker-init's name,
//! and stop, exit codes, logs and zombie reaping behave as with docker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod parity;
use parity::{poll, Env};
use std::time::{Duration, Instant};

#[test]
fn the_command_is_pid_1_with_its_own_command_line() {
    let e = Env::new("pid1");
    let (code, out, err) = e.run(&["run", "--rm", "busybox", "cat", "/proc/1/cmdline"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "cat\0/proc/1/cmdline\0");
    // ps in the container: the command alone, at PID 1; no host command line anywhere.
    let out = e.ok(&["run", "--rm", "busybox", "ps", "-o", "pid,args"]);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines, ["PID   COMMAND", "1 ps -o pid,args"], "{out}");
    assert!(!out.contains("strata"), "{out}");
    // The host environment does not reach PID 1's environ; the container's does.
    let out = e
        .cmd(&[
            "run",
            "--rm",
            "-e",
            "MINE=1",
            "busybox",
            "sh",
            "-c",
            "tr '\\0' '\\n' < /proc/1/environ | grep -c -e PID1_HOST_SECRET -e MINE=1",
        ])
        .env("PID1_HOST_SECRET", "x")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    // Exit codes come straight from the command.
    assert_eq!(
        e.run(&["run", "--rm", "busybox", "sh", "-c", "exit 5"]).0,
        5
    );
    assert_eq!(e.run(&["run", "--rm", "busybox", "no-such-cmd"]).0, 127);
    // As PID 1 the kernel drops signals the command has no handler for, even its own.
    assert_eq!(
        e.run(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "kill -TERM $$; echo alive"
        ])
        .1,
        "alive\n"
    );
}

#[test]
fn init_shows_as_docker_init_and_reaps_zombies() {
    let e = Env::new("pid1i");
    let out = e.ok(&["run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline"]);
    // docker-init's command line; where the kernel keeps the original argv (no
    // CAP_SYS_RESOURCE) it is written setproctitle-style, with spaces.
    let shown = out.replace('\0', " ");
    assert_eq!(
        shown.trim(),
        "/sbin/docker-init -- cat /proc/1/cmdline",
        "{out:?}"
    );
    let out = e.ok(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "cat /proc/1/comm; echo $$",
    ]);
    assert_eq!(out, "docker-init\n2\n");
    // Orphans are reparented to the init, which reaps them; without --init a shell that
    // never waits leaves them as zombies, as with docker.
    let script = "for i in 1 2 3; do (sleep 0.2 &); done; sleep 1; ps -o stat | grep -c '^ *Z'";
    let out = e
        .run(&["run", "--rm", "--init", "busybox", "sh", "-c", script])
        .1;
    assert_eq!(out.trim(), "0");
    // Signals reach the command: SIGTERM ends a command without a handler (143).
    let (code, _, err) = e.run(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "kill -TERM $$; sleep 5",
    ]);
    assert_eq!(code, 143, "{err}");
}

#[test]
fn stop_falls_back_to_sigkill_for_a_pid_1_without_handler() {
    let e = Env::new("pid1s");
    // sleep as PID 1 ignores SIGTERM: stop waits --stop-timeout, then SIGKILL (137).
    e.ok(&[
        "run",
        "-d",
        "--name",
        "plain",
        "--stop-timeout",
        "1",
        "busybox",
        "sleep",
        "100",
    ]);
    let t = Instant::now();
    e.ok(&["stop", "plain"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(e.inspect("plain")["State"]["ExitCode"], 137);
    // With a handler the TERM is taken at once, and the exit code is the handler's.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "trap",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
    ]);
    poll("ready", || e.ok(&["logs", "trap"]).contains("ready"));
    let t = Instant::now();
    e.ok(&["stop", "trap"]);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(e.inspect("trap")["State"]["ExitCode"], 7);
    assert!(e.ok(&["logs", "trap"]).contains("got TERM"));
    // --init forwards the TERM to the command, which dies of it (143) at once.
    e.ok(&[
        "run", "-d", "--init", "--name", "fwd", "busybox", "sleep", "100",
    ]);
    let t = Instant::now();
    e.ok(&["stop", "fwd"]);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(e.inspect("fwd")["State"]["ExitCode"], 143);
    // --stop-signal: stop sends that one first.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "usr1",
        "--stop-signal",
        "USR1",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got USR1; exit 9' USR1; echo ready; while :; do sleep 0.05; done",
    ]);
    poll("ready", || e.ok(&["logs", "usr1"]).contains("ready"));
    e.ok(&["stop", "usr1"]);
    assert_eq!(e.inspect("usr1")["State"]["ExitCode"], 9);
    // A tty container still gets its terminal and output with the command as PID 1.
    let out = e.ok(&["run", "--rm", "-t", "busybox", "sh", "-c", "tty; echo $$"]);
    assert_eq!(out.replace('\r', ""), "/dev/pts/0\n1\n");
}

#[test]
fn rootless_pid_1_shows_no_host_environment() {
    let e = Env::new("pid1r");
    let user = "strata-rootless";
    common::ensure_user(user);
    // As distributions ship it.
    common::rootless_devices();
    let home = e.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::copy(e.dir.join("busybox.tar"), home.join("busybox.tar")).unwrap();
    let st = std::process::Command::new("chown")
        .args(["-R", &format!("{user}:{user}")])
        .arg(&home)
        .status()
        .unwrap();
    assert!(st.success());
    let u = |args: &[&str]| {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid", user, "--regid", user, "--init-groups", "env"])
            .arg(format!("HOME={}", home.display()))
            .arg(format!("XDG_DATA_HOME={}", home.join("data").display()))
            .arg("PID1_ROOTLESS_SECRET=leak")
            .arg(common::strata_bin())
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    u(&[
        "import",
        home.join("busybox.tar").to_str().unwrap(),
        "busybox",
    ]);
    // Rootless, PID 1 stays readable by the container's root: what it shows must be the
    // container's, never the invoking user's environment or command line.
    let probe = "tr '\\0' '\\n' < /proc/1/environ | grep -c PID1_ROOTLESS_SECRET; tr '\\0' ' ' < /proc/1/cmdline; echo";
    for init in [&["--init"][..], &[][..]] {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(init);
        a.extend_from_slice(&["busybox", "sh", "-c", probe]);
        let out = u(&a);
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("0"), "{init:?}: {out}");
        let cmdline = lines.next().unwrap_or_default();
        assert!(
            !cmdline.contains("strata") && !cmdline.contains("busybox sh"),
            "{init:?}: {out}"
        );
        assert!(cmdline.trim_end().ends_with("; echo"), "{init:?}: {out}");
    }
}
