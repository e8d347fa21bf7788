//! `strata attach` to detached containers: input reaches the command, its output reaches
//! the attached client, Ctrl-P Ctrl-Q (or --detach-keys) detaches leaving it running, a
//! second attach works, signals are forwarded without a tty, and the exit status ends it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod parity;
use parity::{poll, Env};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// Everything read from `r`, chunk by chunk, on a channel.
fn reader(mut r: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = r.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Wait (10 s at most) until what `rx` delivered, appended to `seen`, contains `want`.
fn expect(rx: &Receiver<Vec<u8>>, seen: &mut String, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(b) => seen.push_str(&String::from_utf8_lossy(&b)),
            Err(_) => panic!("no {want:?} in the output: {seen:?}"),
        }
    }
}

/// The exit status of `c` within 10 s.
fn exit_of(c: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("attach did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn running(e: &Env, name: &str) -> bool {
    e.inspect(name)["State"]["Running"] == serde_json::json!(true)
}

#[test]
fn attach_without_a_tty_detaches_and_reattaches_and_returns_the_exit_status() {
    let e = Env::new("attach-pipe");
    e.ok(&["run", "-d", "-i", "--name", "a1", "busybox", "sh"]);
    let mut c = e
        .cmd(&["attach", "a1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let out = reader(c.stdout.take().unwrap());
    let err = reader(c.stderr.take().unwrap());
    let mut seen = String::new();
    stdin.write_all(b"echo hello-$((40+2))\n").unwrap();
    expect(&out, &mut seen, "hello-42");
    // stderr stays apart from stdout.
    stdin.write_all(b"echo oops-$((1+1)) >&2\n").unwrap();
    let mut seen_err = String::new();
    expect(&err, &mut seen_err, "oops-2");
    // Ctrl-P Ctrl-Q: attach ends with 0, the container keeps running.
    stdin.write_all(&[0x10, 0x11]).unwrap();
    assert_eq!(exit_of(&mut c), 0);
    assert!(running(&e, "a1"));
    // Again, with other detach keys; the first stays usable as plain input.
    let mut c = e
        .cmd(&["attach", "--detach-keys=ctrl-x,d", "a1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let out = reader(c.stdout.take().unwrap());
    let mut seen = String::new();
    stdin.write_all(b"echo again-$((2+3))\n").unwrap();
    expect(&out, &mut seen, "again-5");
    stdin.write_all(&[0x18, b'd']).unwrap();
    assert_eq!(exit_of(&mut c), 0);
    assert!(running(&e, "a1"));
    // A third attach; the command's exit ends it with the command's status.
    let mut c = e
        .cmd(&["attach", "a1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    stdin.write_all(b"exit 7\n").unwrap();
    assert_eq!(exit_of(&mut c), 7);
    poll("a1 to exit", || !running(&e, "a1"));
    // Bad detach keys and stopped containers are refused with a message.
    assert!(e
        .fails(&["attach", "--detach-keys=ctrl-pq", "a1"])
        .contains("invalid detach keys"));
    assert!(e.fails(&["attach", "a1"]).contains("not running"));
}

#[test]
fn attach_forwards_sigint_to_a_container_without_a_tty() {
    let e = Env::new("attach-sig");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "a2",
        "busybox",
        "sh",
        "-c",
        "trap 'echo caught; exit 5' INT; while true; do echo tick; sleep 0.1; done",
    ]);
    let mut c = e
        .cmd(&["attach", "a2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = reader(c.stdout.take().unwrap());
    let mut seen = String::new();
    // Attached once its output arrives.
    expect(&out, &mut seen, "tick");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    expect(&out, &mut seen, "caught");
    assert_eq!(exit_of(&mut c), 5);
}

/// `strata attach NAME` on a new pty: (child, master).
fn attach_on_pty(e: &Env, name: &str) -> (Child, OwnedFd) {
    let ws = nix::pty::Winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&ws), None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    let c = e
        .cmd(&["attach", name])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    (c, pty.master)
}

#[test]
fn attach_to_a_tty_container_detaches_with_ctrl_p_ctrl_q() {
    let e = Env::new("attach-tty");
    e.ok(&["run", "-dit", "--name", "a3", "busybox", "sh"]);
    let (mut c, master) = attach_on_pty(&e, "a3");
    let mut w = std::fs::File::from(master.try_clone().unwrap());
    let out = reader(std::fs::File::from(master));
    let mut seen = String::new();
    w.write_all(b"echo tty-$((3*3))\n").unwrap();
    expect(&out, &mut seen, "tty-9");
    // The container's shell sees a terminal.
    w.write_all(b"[ -t 0 ] && echo is-a-$((0+0))tty\n").unwrap();
    expect(&out, &mut seen, "is-a-0tty");
    // The attaching terminal's size is the container's.
    w.write_all(b"stty size\n").unwrap();
    expect(&out, &mut seen, "33 101");
    w.write_all(&[0x10, 0x11]).unwrap();
    assert_eq!(exit_of(&mut c), 0);
    assert!(running(&e, "a3"));
    let (mut c, master) = attach_on_pty(&e, "a3");
    let mut w = std::fs::File::from(master.try_clone().unwrap());
    let out = reader(std::fs::File::from(master));
    let mut seen = String::new();
    w.write_all(b"echo back-$((5+5))\n").unwrap();
    expect(&out, &mut seen, "back-10");
    w.write_all(b"exit 3\n").unwrap();
    assert_eq!(exit_of(&mut c), 3);
}
