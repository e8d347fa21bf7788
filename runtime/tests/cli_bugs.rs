//! Regression tests for the CLI bugs of issue 16: printing into a closed pipe, `stop` of a
//! `--rm` container, `kill` then `start`, and `run -it` with a pipe for stdin. Real
//! containers from a busybox image, driven through the strata binary. Rootful.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::store_env::StoreEnv;
use std::os::fd::OwnedFd;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// A private store with a busybox image; removed on drop.
struct Env(StoreEnv);

impl std::ops::Deref for Env {
    type Target = StoreEnv;
    fn deref(&self) -> &StoreEnv {
        &self.0
    }
}

impl Env {
    fn new() -> Env {
        Env(StoreEnv::new("clibugs"))
    }

    fn status(&self, name: &str) -> String {
        self.ok(&["inspect", name])
            .lines()
            .map(str::to_ascii_lowercase)
            .find(|l| l.contains("\"status\""))
            .unwrap_or_default()
    }
}

/// Run `strata ARGS` with stdout a pipe whose reader is already closed: every write to
/// it fails with EPIPE.
fn into_closed_pipe(e: &Env, args: &[&str]) -> Output {
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    drop(r);
    e.cmd(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(w))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn printing_into_a_closed_pipe_exits_quietly() {
    let e = Env::new();
    e.ok(&["run", "--name", "done", "busybox", "true"]);
    let trace = e.dir.join("t.jsonl");
    std::fs::write(
        &trace,
        "{\"t_us\":1,\"op\":\"lookup\",\"path\":\"/a\",\"branch\":\"upper\",\"errno\":0,\"lat_us\":5}\n",
    )
    .unwrap();
    for args in [
        vec!["images"],
        vec!["ps", "-a"],
        vec!["history", "busybox"],
        vec!["inspect", "busybox"],
        vec!["inspect", "done"],
        vec!["info"],
        vec!["trace", "summary", trace.to_str().unwrap()],
    ] {
        let out = into_closed_pipe(&e, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.is_empty(),
            "strata {args:?} into a closed pipe wrote to stderr: {err}"
        );
        // 141 = 128 + SIGPIPE, what a shell reports for a tool killed by SIGPIPE.
        assert_eq!(out.status.code(), Some(141), "strata {args:?}");
    }
}

#[test]
fn stop_of_an_rm_container_is_immediate_and_succeeds() {
    let e = Env::new();
    // Three stops at once: the ones that lose the race find the container exiting, or
    // removed by its supervisor (--rm) before they saw its exit recorded.
    for round in 0..3 {
        let name = format!("gone{round}");
        e.ok(&[
            "run", "-d", "--rm", "--init", "--name", &name, "busybox", "sleep", "100",
        ]);
        let t = Instant::now();
        let stops: Vec<_> = (0..3)
            .map(|_| {
                e.cmd(&["stop", &name])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for s in stops {
            let out = s.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            // A stop that starts after the removal is told so, as docker does.
            assert!(
                out.status.success() || err.contains("no such container"),
                "round {round}: stop failed: {err}"
            );
        }
        // --init: sleep is not PID 1 (strata's init is), so SIGTERM ends it at once.
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "round {round}: stop took {:?}",
            t.elapsed()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.ok(&["ps", "-aq"]).trim() != "" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(e.ok(&["ps", "-aq"]).trim(), "", "a --rm container is left");
}

#[test]
fn kill_waits_until_the_container_is_dead() {
    let e = Env::new();
    e.ok(&["run", "-d", "--name", "k", "busybox", "sleep", "100"]);
    for round in 0..6 {
        e.ok(&["kill", "k"]);
        let st = e.status("k");
        assert!(st.contains("exited"), "round {round}: after kill: {st}");
        let out = e.strata(&["start", "k"]);
        assert!(
            out.status.success(),
            "round {round}: start after kill: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn run_it_with_a_pipe_for_stdin_is_refused() {
    let e = Env::new();
    let mut child = e
        .cmd(&["run", "--rm", "-it", "busybox", "sh"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(b"echo hi\n");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("run -it with a pipe for stdin did not exit");
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the input device is not a TTY"), "{err}");
    // Refused before anything was created.
    assert_eq!(e.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn sigterm_ends_a_foreground_run() {
    let e = Env::new();
    let mut child = e
        .cmd(&["run", "--rm", "--init", "busybox", "sleep", "100"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Until the container is listed as running, then SIGTERM to the strata process.
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.ok(&["ps", "-q"]).trim().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(st) = child.try_wait().unwrap() else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("SIGTERM did not end a foreground run");
    };
    assert_eq!(st.code(), Some(143));
}
