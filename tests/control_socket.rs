//! The control socket's hardening (docs/control.md; issue 12): it is 0600 from the moment
//! it appears (whatever the daemon's umask), a peer that is neither root nor the mount's
//! owner is refused even when it may open the socket, a request line without end is
//! refused without growing the daemon, and a connection flood is bounded; the daemon keeps
//! serving through all of it.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;
use strata_tests::delta::DeltaMount;
use strata_tests::mount::{strata_bin, wait_until};
use strata_tests::sys;

/// A mounted union with one lower file.
fn mounted(label: &str) -> DeltaMount {
    let mut m = DeltaMount::new(label, "");
    std::fs::write(m.lower.join("a"), b"a\n").unwrap();
    m.mount();
    m
}

fn socket(m: &DeltaMount) -> std::path::PathBuf {
    m.work.join("strata.sock")
}

/// Send one request line on `c` and read the answer line.
fn ask(c: &mut UnixStream, req: &str) -> Result<Value, String> {
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // A refused connection is answered and closed at once: the write may fail, the
    // answer is still there to read.
    let wrote = c.write_all(format!("{req}\n").as_bytes());
    let mut line = String::new();
    BufReader::new(&*c)
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    serde_json::from_str(&line).map_err(|e| format!("bad answer {line:?}: {e} (write: {wrote:?})"))
}

fn ping_ok(m: &DeltaMount) -> bool {
    UnixStream::connect(socket(m))
        .ok()
        .and_then(|mut c| ask(&mut c, r#"{"op":"ping"}"#).ok())
        .is_some_and(|v| v["ok"] == Value::Bool(true))
}

/// The daemon's thread count (/proc/PID/status).
fn threads(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// inotify events (mask, name) on `dir` since `fd` was set up, without blocking.
fn events(fd: i32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return out;
        }
        let mut i = 0usize;
        while i + 16 <= n as usize {
            let mask = u32::from_ne_bytes(buf[i + 4..i + 8].try_into().unwrap());
            let len = u32::from_ne_bytes(buf[i + 12..i + 16].try_into().unwrap()) as usize;
            let name = &buf[i + 16..i + 16 + len];
            let name = String::from_utf8_lossy(name.split(|b| *b == 0).next().unwrap_or(&[]));
            out.push((mask, name.into_owned()));
            i += 16 + len;
        }
    }
}

/// Mounted under umask 0, the socket never shows at its path with another mode than 0600:
/// it is not created there (bind would give it 0777 & ~umask) nor chmod'ed there after.
#[test]
fn socket_is_0600_from_creation() {
    let mut m = DeltaMount::new("sock-mode", "");
    let work = std::ffi::CString::new(m.work.to_string_lossy().as_bytes()).unwrap();
    let ino = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(ino >= 0, "inotify_init1");
    let wd = unsafe {
        libc::inotify_add_watch(
            ino,
            work.as_ptr(),
            libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_ATTRIB,
        )
    };
    assert!(wd >= 0, "inotify_add_watch");
    // The daemon inherits the umask (other tests of this file do not mind a wide one).
    let old = sys::umask(0);
    m.mount();
    sys::umask(old);
    let st = std::fs::symlink_metadata(socket(&m)).expect("the control socket");
    let ev = events(ino);
    unsafe { libc::close(ino) };
    assert!(st.file_type().is_socket(), "not a socket");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&st.permissions()) & 0o7777,
        0o600,
        "socket mode right after the mount is live"
    );
    let on_sock: Vec<&(u32, String)> = ev.iter().filter(|e| e.1 == "strata.sock").collect();
    let created = on_sock.iter().any(|e| e.0 & libc::IN_CREATE != 0);
    let chmoded = on_sock.iter().any(|e| e.0 & libc::IN_ATTRIB != 0);
    assert!(
        !created && !chmoded,
        "the socket was created at its path with the umask's mode (created: {created}) and/or changed mode there after (chmod: {chmoded}): events {on_sock:?}"
    );
    assert!(ping_ok(&m), "the socket does not answer");
    m.unmount();
}

/// `strata fs stats` as another uid: refused without privileges by the socket's mode, and
/// with CAP_DAC_OVERRIDE (which opens any socket) by the daemon's peer check; root and
/// the owner keep being served.
#[test]
fn other_uid_refused() {
    let m = mounted("sock-peer");
    let mnt = m.mnt.to_string_lossy().to_string();
    let bin = strata_bin().to_string_lossy().to_string();
    let run = |caps: bool| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        if caps {
            c.args(["--inh-caps=+dac_override", "--ambient-caps=+dac_override"]);
        }
        let out = c
            .args([&bin, "fs", "stats", "--json", &mnt])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(false);
    assert!(!ok, "uid 65534 got an answer:\n{out}{err}");
    let (ok, out, err) = run(true);
    assert!(
        !ok,
        "uid 65534 with CAP_DAC_OVERRIDE got an answer from the daemon:\n{out}{err}"
    );
    assert!(
        err.contains("permission denied") && err.contains("65534"),
        "the refusal does not say why: {err}"
    );
    assert!(
        m.log().contains("refused a connection from another user"),
        "no log line:\n{}",
        m.log()
    );
    let ok = Command::new(&bin)
        .args(["fs", "stats", "--json", &mnt])
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "root is refused");
    assert!(ping_ok(&m));
}

/// A request line of 4 MiB without a newline: refused with a clear error as soon as it
/// passes the limit (before the client stops sending), the connection closed, the daemon
/// serving on.
#[test]
fn over_long_line_refused() {
    let m = mounted("sock-line");
    let c = UnixStream::connect(socket(&m)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut w = c.try_clone().unwrap();
    // Sends until the daemon closes; the answer must come while it still sends.
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0usize;
        while sent < 4 << 20 {
            if w.write_all(&chunk).is_err() {
                return (sent, false);
            }
            sent += chunk.len();
        }
        (sent, true)
    });
    let mut line = String::new();
    let n = BufReader::new(&c).read_line(&mut line).unwrap_or(0);
    assert!(n > 0, "no answer to an over-long line");
    let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    assert_eq!(v["ok"], Value::Bool(false), "answer {line:?}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("too long")),
        "the answer does not say the line is too long: {line:?}"
    );
    let _ = c.shutdown(std::net::Shutdown::Both);
    let (sent, all) = writer.join().unwrap();
    eprintln!("sent {sent} bytes before the daemon closed (all 4 MiB: {all})");
    assert!(ping_ok(&m), "the daemon stopped serving");
}

/// 64 connections held open at once: beyond the limit they are answered with an error
/// and closed (no thread each); once they are gone, a new connection is served.
#[test]
fn connection_flood_bounded() {
    let m = mounted("sock-flood");
    let pid = *m.daemon_pids().first().expect("daemon pid");
    let before = threads(pid);
    let mut conns = Vec::new();
    let (mut served, mut refused) = (0, 0);
    for i in 0..64 {
        let mut c = UnixStream::connect(socket(&m)).unwrap();
        match ask(&mut c, r#"{"op":"ping"}"#) {
            Ok(v) if v["ok"] == Value::Bool(true) => served += 1,
            Ok(v) if v["error"].as_str().is_some_and(|e| e.contains("too many")) => refused += 1,
            other => panic!("connection {i}: {other:?}"),
        }
        conns.push(c);
    }
    let during = threads(pid);
    eprintln!("{served} served, {refused} refused; daemon threads {before} -> {during}");
    assert!(
        refused > 0 && served < 64,
        "64 simultaneous connections all served ({served})"
    );
    assert!(
        during < before + 32,
        "the daemon grew from {before} to {during} threads for 64 connections"
    );
    drop(conns);
    assert!(
        wait_until(Duration::from_secs(30), || ping_ok(&m)),
        "no connection served after the flood ended"
    );
}
