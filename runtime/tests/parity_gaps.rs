//! docker commands and flags found missing in the issue 16 audit: `create`, `start -a -i`
//! (and `start -i`), `container create`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod parity;
use parity::Env;
use std::io::Write;
use std::process::Stdio;

/// `strata ARGS` with `input` on stdin: (exit code, stdout).
fn with_input(e: &Env, args: &[&str], input: &str) -> (i32, String) {
    let mut c = e
        .cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn create_makes_a_container_that_start_runs() {
    let e = Env::new("gap-create");
    let id = e.ok(&[
        "create",
        "--name",
        "c1",
        "-e",
        "X=42",
        "busybox",
        "sh",
        "-c",
        "echo x=$X",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    assert_eq!(e.inspect("c1")["State"]["Status"], "created");
    assert_eq!(e.ok(&["start", "-a", "c1"]), "x=42\n");
    // The management group's spelling too.
    e.ok(&["container", "create", "--name", "c2", "busybox", "true"]);
    assert_eq!(e.inspect("c2")["State"]["Status"], "created");
}

#[test]
fn start_a_i_relays_stdin_to_a_container_created_with_i() {
    let e = Env::new("gap-start-i");
    e.ok(&["create", "-i", "--name", "c3", "busybox", "sh"]);
    let (code, out) = with_input(
        &e,
        &["start", "-a", "-i", "c3"],
        "echo in-$((6*7))\nexit 4\n",
    );
    assert_eq!((code, out.as_str()), (4, "in-42\n"));
    // -i alone attaches as docker's does.
    let (code, out) = with_input(&e, &["start", "-i", "c3"], "echo again\n");
    assert_eq!((code, out.as_str()), (0, "again\n"));
}

#[test]
fn logs_until_leaves_out_later_lines_and_ends_a_follow() {
    let e = Env::new("gap-until");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "l1",
        "busybox",
        "sh",
        "-c",
        "echo early; sleep 2; echo late; sleep 100",
    ]);
    parity::poll("the late line", || e.ok(&["logs", "l1"]).contains("late"));
    let logs = e.ok(&["logs", "-t", "l1"]);
    // Up to the early line's time (the late one is 2 s later): only the early one.
    let early = logs.lines().find(|l| l.ends_with(" early")).unwrap();
    let t_early = early.split_whitespace().next().unwrap();
    assert_eq!(
        e.ok(&["logs", "--until", t_early, "l1"]),
        "early\n",
        "{logs}"
    );
    // -f with an --until in the past ends at once although the container runs.
    let t0 = std::time::Instant::now();
    assert_eq!(e.ok(&["logs", "-f", "--until", t_early, "l1"]), "early\n");
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    assert!(e
        .fails(&["logs", "--until", "soon", "l1"])
        .contains("invalid --until"));
}

#[test]
fn exec_env_file_sets_variables_and_e_wins() {
    let e = Env::new("gap-exec-envfile");
    e.ok(&["run", "-d", "--name", "x1", "busybox", "sleep", "100"]);
    let file = std::env::temp_dir().join(format!("strata-envfile-{}", std::process::id()));
    std::fs::write(&file, "# comment\nA=from-file\nB=file-b\n").unwrap();
    let f = file.to_str().unwrap();
    let out = e.ok(&[
        "exec",
        "--env-file",
        f,
        "-e",
        "B=from-e",
        "x1",
        "sh",
        "-c",
        "echo $A $B",
    ]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(out, "from-file from-e\n");
}
