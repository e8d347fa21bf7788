//! Ctrl-C during `pull`, `push`, `load` and `save` leaves nothing behind, an interrupted
//! pull resumes without fetching again the layers it had verified, and the next store
//! open sweeps staging whose owner process is gone. Real registry on 127.0.0.1. Rootful.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::registry::Registry;
use common::{busybox_store, strata_bin};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn strata(store: &Path, args: &[&str]) -> Output {
    Command::new(strata_bin())
        .arg("--root")
        .arg(store)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(store: &Path, args: &[&str]) -> String {
    let out = strata(store, args);
    assert!(
        out.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn spawn(store: &Path, args: &[&str]) -> Child {
    Command::new(strata_bin())
        .arg("--root")
        .arg(store)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Poll (bounded) until `cond`, then SIGINT `child` and wait for it: its exit status.
fn interrupt_when(child: &mut Child, what: &str, mut cond: impl FnMut() -> bool) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{what}: finished before it could be interrupted"
        );
        assert!(Instant::now() < deadline, "{what}: never got there");
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: SIGINT did not end it");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A store with `two:1`: busybox plus a layer of 40 MB of random bytes (slow to gzip and
/// to unpack, so that the commands can be caught in the middle).
fn two_layer_store(dir: &Path) -> PathBuf {
    let store = busybox_store(dir);
    ok(
        &store,
        &[
            "run",
            "--name",
            "w",
            "busybox",
            "sh",
            "-c",
            "head -c 40000000 /dev/urandom > /big",
        ],
    );
    ok(&store, &["commit", "w", "two:1"]);
    ok(&store, &["rm", "w"]);
    store
}

#[test]
fn interrupted_transfers_leave_nothing_and_a_pull_resumes() {
    let dir = std::env::temp_dir().join(format!("strata-intr-{}", std::process::id()));
    let store = two_layer_store(&dir.join("src"));
    let reg = Registry::start(&dir.join("registry"));
    let target = format!("{}/two:1", reg.host());

    // push: Ctrl-C while the big layer is compressed in store/tmp/push-*.
    let mut child = spawn(&store, &["push", "two:1", &target]);
    let tmp = store.join("tmp");
    let code = interrupt_when(&mut child, "push", || {
        entries(&tmp).iter().any(|e| e.starts_with("push-"))
    });
    assert_eq!(code, Some(130));
    assert_eq!(entries(&tmp), Vec::<String>::new(), "push left staging");
    ok(&store, &["push", "two:1", &target]);

    // save: Ctrl-C while the hidden temporary archive is written beside the output.
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("two.tar");
    let mut child = spawn(&store, &["save", "two:1", "-o", out.to_str().unwrap()]);
    let code = interrupt_when(&mut child, "save", || {
        entries(&out_dir)
            .iter()
            .any(|e| e.starts_with(".two.tar.tmp"))
    });
    assert_eq!(code, Some(130));
    assert_eq!(entries(&out_dir), Vec::<String>::new(), "save left a file");
    ok(&store, &["save", "two:1", "-o", out.to_str().unwrap()]);

    // load: Ctrl-C while the archive's layers are staged.
    let fresh = dir.join("fresh");
    let mut child = spawn(&fresh, &["load", "-i", out.to_str().unwrap()]);
    let ftmp = fresh.join("tmp");
    let code = interrupt_when(&mut child, "load", || !entries(&ftmp).is_empty());
    assert_eq!(code, Some(130));
    assert_eq!(entries(&ftmp), Vec::<String>::new(), "load left staging");

    // pull: Ctrl-C once the first layer is stored and the second is being fetched; the
    // next pull fetches the second layer only.
    let pulled = dir.join("pulled");
    let ptmp = pulled.join("tmp");
    let before = reg.blob_gets().len();
    let mut child = spawn(&pulled, &["pull", &target]);
    let code = interrupt_when(&mut child, "pull", || {
        let layers = entries(&pulled.join("layers"));
        layers.iter().any(|l| l.ends_with(".json")) && !entries(&ptmp).is_empty()
    });
    assert_eq!(code, Some(130));
    assert_eq!(entries(&ptmp), Vec::<String>::new(), "pull left staging");
    let first: Vec<String> = reg.blob_gets()[before..].to_vec();
    let mid = reg.blob_gets().len();
    ok(&pulled, &["pull", &target]);
    let second: Vec<String> = reg.blob_gets()[mid..].to_vec();
    // The first pull fetched the config and the small layer and began the big one; the
    // second fetches the config and the big layer, not the small one.
    let blob = |l: &String| {
        l.split("/blobs/")
            .nth(1)
            .and_then(|r| r.split([' ', '"']).next())
            .unwrap_or("")
            .to_string()
    };
    let again: Vec<String> = second.iter().map(blob).collect();
    let done_before: Vec<String> = first.iter().map(blob).collect();
    // The small layer (the first, fetched right after the config) was verified and
    // stored before the interrupt: it is not fetched again. (The big one's GET may be in
    // the access log already: the registry logs a response once it has sent it.)
    assert!(done_before.len() >= 2, "first pull: {done_before:?}");
    assert!(
        !again.contains(&done_before[1]),
        "re-pull fetched the stored layer again: {again:?} after {done_before:?}"
    );
    assert_eq!(
        ok(&pulled, &["run", "--rm", &target, "wc", "-c", "/big"]).trim(),
        "40000000 /big"
    );
    // The registry writes into dir until it is gone.
    drop(reg);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn store_open_sweeps_staging_of_dead_owners_only() {
    let dir = std::env::temp_dir().join(format!("strata-sweep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = dir.join("store");
    ok(&store, &["images"]);
    let tmp = store.join("tmp");
    // A dead owner: a process that has exited (its pid is not reused this fast).
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let me = std::process::id();
    let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
    let start: u64 = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let dead = tmp.join(format!("layer-{gone_pid}.12345-deadbeef"));
    let live = tmp.join(format!("push-{me}.{start}-cafe"));
    for d in [&dead, &live] {
        std::fs::create_dir_all(d.join("tree")).unwrap();
        std::fs::write(d.join("tree/blob"), vec![7u8; 1 << 20]).unwrap();
    }
    ok(&store, &["images"]);
    assert!(!dead.exists(), "staging of a dead owner is left");
    assert!(live.exists(), "staging of a running owner was removed");
    let _ = std::fs::remove_dir_all(&dir);
}
