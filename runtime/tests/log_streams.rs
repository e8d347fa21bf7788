//! `strata logs` the docker way: foreground containers are logged too, stdout and stderr
//! kept apart, `--tail N|all`, `-t/--timestamps`, `--since` (RFC 3339, unix time, duration).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod parity;
use parity::{poll, Env};

#[test]
fn foreground_logs_keep_stdout_and_stderr_apart() {
    let e = Env::new("logs");
    // The foreground run still prints each stream to its own side...
    let (code, out, err) = e.run(&[
        "run",
        "--name",
        "fg",
        "busybox",
        "sh",
        "-c",
        // The pauses keep the lines' order across the two streams unambiguous.
        "echo out1; sleep 0.05; echo err1 >&2; sleep 0.05; echo out2; printf tail",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "out1\nout2\ntail");
    assert_eq!(err, "err1\n");
    // ...and the log has both, each on its side.
    let (_, out, err) = e.run(&["logs", "fg"]);
    assert_eq!(out, "out1\nout2\ntail");
    assert_eq!(err, "err1\n");
    // --tail counts lines of both streams, newest last; all is everything.
    let (_, out, err) = e.run(&["logs", "--tail", "2", "fg"]);
    assert_eq!((out.as_str(), err.as_str()), ("out2\ntail", ""));
    assert_eq!(
        e.run(&["logs", "--tail", "all", "fg"]).1,
        "out1\nout2\ntail"
    );
    assert_eq!(e.run(&["logs", "-n", "0", "fg"]).1, "");
    // -t: each line starts with its RFC 3339 time (nanoseconds, UTC).
    let out = e.ok(&["logs", "-t", "fg"]);
    for l in out.lines() {
        let (t, _) = l.split_once(' ').unwrap();
        assert_eq!(t.len(), 30, "{l}");
        assert!(
            t.ends_with('Z') && t.as_bytes()[10] == b'T' && t.as_bytes()[19] == b'.',
            "{l}"
        );
    }
    // --since: a duration back, an RFC 3339 time, a unix time.
    assert_eq!(e.ok(&["logs", "--since", "10m", "fg"]), "out1\nout2\ntail");
    assert_eq!(e.ok(&["logs", "--since", "2999-01-01T00:00:00Z", "fg"]), "");
    assert_eq!(e.ok(&["logs", "--since", "1", "fg"]), "out1\nout2\ntail");
    assert!(e
        .fails(&["logs", "--since", "yesterday", "fg"])
        .contains("invalid --since"));
    assert!(e
        .fails(&["logs", "--tail", "x", "fg"])
        .contains("invalid --tail"));
}

#[test]
fn detached_and_tty_logs_and_follow() {
    let e = Env::new("logsd");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "bg",
        "busybox",
        "sh",
        "-c",
        "echo a; echo b >&2; sleep 0.3; echo c",
    ]);
    poll("the exit", || {
        e.inspect("bg")["State"]["Status"] == "exited"
    });
    let (_, out, err) = e.run(&["logs", "bg"]);
    assert_eq!((out.as_str(), err.as_str()), ("a\nc\n", "b\n"));
    // -f returns once the container has exited, with everything.
    e.ok(&["start", "bg"]);
    let (_, out, _) = e.run(&["logs", "-f", "bg"]);
    assert_eq!(out, "a\nc\na\nc\n");
    // A terminal is one stream: stdout.
    e.ok(&[
        "run",
        "-t",
        "--name",
        "tty",
        "busybox",
        "sh",
        "-c",
        "echo on-tty; echo err-tty >&2",
    ]);
    let (_, out, err) = e.run(&["logs", "tty"]);
    assert_eq!(out.replace('\r', ""), "on-tty\nerr-tty\n");
    assert_eq!(err, "");
}
