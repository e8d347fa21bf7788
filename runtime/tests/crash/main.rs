//! Crashes of a running container (issue 8, BRIEF §7): SIGKILL of the container's
//! supervisor (while the container writes hard into its root, or while `run -d` is still
//! starting it), of its FUSE daemon (`--driver fuse`), or of both; then the first strata
//! command (ps, inspect, diff, export, logs or stop) copes with the stale state, `strata
//! ps -a` shows it exited (no hang), no mount, cgroup or process of it is left, `strata
//! fsck` of the upper is clean, `strata diff` works, `strata start` shows every fsync'ed
//! byte (files and block-delta writes into a lower file), and `strata rm` leaves nothing
//! behind. Repeated with seeded random delays and kill targets.
//!
//! `STRATA_CRASH_ITERS` sets the fuse iterations (default 8; overlay runs half as many);
//! `STRATA_SEED` replays a seed (the schedule of targets, delays and first commands; the
//! exact kill point also depends on timing). Rootful.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
use common::{install_busybox, strata_bin};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BLOCK: usize = 4096;
/// The big file of the image's layer: on the fuse driver a write into it makes a block delta.
const BIG_BLOCKS: usize = 2048;

/// The container's command. With /ctl/verify present (the test creates it before
/// `strata start`) it only idles, so the restarted root can be read back. Otherwise, per
/// sequence number i: an fsync'ed file /w/d/fI, an fsync'ed 4 KiB write into block i of the
/// lower layer's /big/blob, then "i" appended (fsync'ed) to /w/log, so a logged i promises
/// both; then unsynced writes, a rename and a delete. `set -e`: once the root is gone
/// (its daemon killed) the first failing command ends the container.
const SCRIPT: &str = r#"set -e
if [ -e /ctl/verify ]; then exec sleep 100000; fi
mkdir -p /w/d /w/u
i=1
while :; do
  n=$(( (i * 7919) % 200000 + 1 ))
  yes "f$i-" | head -c $n | dd of=/w/d/f$i bs=65536 conv=fsync 2>/dev/null
  if [ $i -lt 2048 ]; then
    yes "b$i-" | head -c 4096 | dd of=/big/blob bs=4096 seek=$i count=1 iflag=fullblock conv=notrunc,fsync 2>/dev/null
  fi
  echo $i | dd of=/w/log oflag=append conv=notrunc,fsync 2>/dev/null
  yes "u$i-" | head -c $n > /w/u/f$i
  mv /w/u/f$i /w/u/g$i
  if [ $i -gt 3 ]; then rm /w/u/g$((i - 3)); fi
  i=$((i + 1))
done
"#;

/// A tiny deterministic generator (splitmix64): the schedule of kills and delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `STRATA_SEED` (replay), a fixed seed under CI (unless `STRATA_FRESH_SEEDS`), else the clock.
fn seed(salt: u64) -> u64 {
    if let Ok(s) = std::env::var("STRATA_SEED") {
        let s = s.trim();
        return s
            .strip_prefix("0x")
            .map(|h| u64::from_str_radix(h, 16))
            .unwrap_or_else(|| s.parse())
            .unwrap_or_else(|e| panic!("STRATA_SEED={s}: {e}"));
    }
    let fixed =
        std::env::var_os("CI").is_some() && std::env::var_os("STRATA_FRESH_SEEDS").is_none();
    if fixed {
        return 0x5eed_c4a5_0000_0000 ^ salt;
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    t ^ ((std::process::id() as u64) << 32) ^ salt
}

/// `STRATA_CRASH_ITERS`, or 8: the fuse test's iterations (the overlay test runs half).
fn iterations() -> usize {
    std::env::var("STRATA_CRASH_ITERS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(8)
}

/// Prints the replay line when the test fails.
struct Replay {
    test: &'static str,
    seed: u64,
    iters: usize,
    at: Cell<usize>,
    what: std::cell::RefCell<String>,
}

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n{} failed at iteration {} of {} ({}) with seed {:#x}; replay with:\n  STRATA_SEED={:#x} STRATA_CRASH_ITERS={} cargo test -p strata-runtime --test crash -- {} --nocapture\n",
                self.test,
                self.at.get(),
                self.iters,
                self.what.borrow(),
                self.seed,
                self.seed,
                iterations(),
                self.test
            );
        }
    }
}

/// What is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// The supervisor, while the container writes.
    Supervisor,
    /// The root's FUSE daemon, while the container writes.
    Daemon,
    /// Both.
    Both,
    /// The supervisor while it starts the container (`run -d` has not returned).
    Starting,
}

/// A private store with the image `crashimg`: busybox and an 8 MiB /big/blob.
struct Env {
    dir: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Block `b` of /big/blob as the image has it.
fn lower_block(b: usize) -> Vec<u8> {
    repeat_to(format!("lower-{b}\n").as_bytes(), BLOCK)
}

/// `yes WORD | head -c len`.
fn yes(word: &str, len: usize) -> Vec<u8> {
    repeat_to(format!("{word}\n").as_bytes(), len)
}

fn repeat_to(unit: &[u8], len: usize) -> Vec<u8> {
    unit.iter().copied().cycle().take(len).collect()
}

impl Env {
    fn new() -> Env {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests run containers and need root"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("strata-crash-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        for d in ["bin", "etc", "tmp", "big"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        install_busybox(&rootfs.join("bin"));
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
        let blob: Vec<u8> = (0..BIG_BLOCKS).flat_map(lower_block).collect();
        std::fs::write(rootfs.join("big/blob"), blob).unwrap();
        let tar = dir.join("image.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::remove_dir_all(&rootfs).unwrap();
        let env = Env { dir };
        env.ok(&["import", tar.to_str().unwrap(), "crashimg"]);
        std::fs::remove_file(&tar).unwrap();
        env
    }

    fn root(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// Run strata; a hang (60 s) fails the test instead of blocking it.
    fn strata(&self, args: &[&str]) -> Output {
        let mut tries = 0;
        let child = loop {
            let r = Command::new(strata_bin())
                .arg("--root")
                .arg(self.root())
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            match r {
                Ok(c) => break c,
                // A cargo build elsewhere in the tree is replacing the binary.
                Err(e)
                    if tries < 100
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::ExecutableFileBusy
                        ) =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot run {}: {e}", strata_bin().display()),
            }
        };
        let pid = child.id() as i32;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                panic!(
                    "strata {args:?} hung for 60 s; the store's processes:\n{}",
                    self.diagnose()
                );
            }
        }
    }

    /// What the store's containers and processes are doing (for a hang).
    fn diagnose(&self) -> String {
        let mut out = String::new();
        for d in std::fs::read_dir(self.root().join("containers"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let st = std::fs::read_to_string(d.path().join("state.json")).unwrap_or_default();
            out.push_str(&format!(
                "{}: {}\n",
                d.path().display(),
                st.replace('\n', " ")
            ));
        }
        out.push_str(&format!("mounts: {:?}\n", mounts_under(&self.root())));
        for p in procs_naming(&self.root()) {
            let read = |f: &str| std::fs::read(format!("/proc/{p}/{f}")).unwrap_or_default();
            let stat = String::from_utf8_lossy(&read("stat")).into_owned();
            out.push_str(&format!(
                "{p} [{}] wchan {} {}\n  stack: {}\n",
                stat.split(' ').take(4).collect::<Vec<_>>().join(" "),
                String::from_utf8_lossy(&read("wchan")),
                String::from_utf8_lossy(&read("cmdline")).replace('\0', " "),
                String::from_utf8_lossy(&read("stack")).replace('\n', " | ")
            ));
        }
        out
    }

    /// Run and expect success; stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.strata(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.root().join("containers").join(id)
    }

    fn state(&self, id: &str) -> serde_json::Value {
        let p = self.container_dir(id).join("state.json");
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
    }

    /// The union's lower branches of a container, top first (as the runtime mounts them).
    fn lowers(&self, id: &str) -> Vec<PathBuf> {
        let p = self.container_dir(id).join("config.json");
        let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let mut out: Vec<PathBuf> = cfg["layers"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .map(|h| self.root().join("layers").join(h.as_str().unwrap()))
            .collect();
        out.push(self.container_dir(id).join("init"));
        out
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(out) = Command::new(strata_bin())
            .arg("--root")
            .arg(self.root())
            .args(["ps", "-a", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new(strata_bin())
                    .arg("--root")
                    .arg(self.root())
                    .args(["rm", "-f", id])
                    .output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn poll(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process that exists and is not a zombie.
fn alive(pid: i32) -> bool {
    start_time(pid).is_some()
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Start time (clock ticks since boot) of a live, non-zombie process.
fn start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = s.get(s.rfind(')')? + 2..)?.split(' ');
    if matches!(f.next(), Some("Z" | "X") | None) {
        return None;
    }
    f.nth(18)?.parse().ok()
}

/// A container as the host sees it, to find what is left of it.
struct Procs {
    id: String,
    /// Its init (pid, start time) and pid namespace (/proc/PID/ns/pid text), when known.
    /// Namespace inode numbers are reused once a namespace is gone (by the next container
    /// of any test), so it only names this container while its init lives; init's death
    /// takes the whole namespace with it.
    init: Option<(i32, u64, String)>,
}

impl Procs {
    fn of(id: &str, init: Option<i32>) -> Procs {
        let init = init.and_then(|pid| {
            let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
            Some((pid, start_time(pid)?, ns.to_string_lossy().into_owned()))
        });
        Procs {
            id: id.to_string(),
            init,
        }
    }

    /// Live processes of the container: in its cgroup, or in its pid namespace.
    fn left(&self) -> Vec<i32> {
        let cg = format!("/strata/{}", self.id);
        let ns = self
            .init
            .as_ref()
            .filter(|(pid, start, _)| start_time(*pid) == Some(*start))
            .map(|(_, _, ns)| ns);
        all_pids()
            .into_iter()
            .filter(|p| {
                let in_cg = std::fs::read_to_string(format!("/proc/{p}/cgroup"))
                    .is_ok_and(|c| c.lines().any(|l| l.ends_with(&cg)));
                let in_ns = ns.is_some_and(|ns| {
                    std::fs::read_link(format!("/proc/{p}/ns/pid"))
                        .is_ok_and(|l| l.to_string_lossy() == *ns)
                });
                (in_cg || in_ns) && alive(*p)
            })
            .collect()
    }
}

/// Live processes whose command line names `dir`: strata's supervisors, their forked
/// container inits and mount helpers, and the FUSE daemons of a store.
fn procs_naming(dir: &Path) -> Vec<i32> {
    let want = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|p| {
            *p != me
                && std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                    c.split(|b| *b == 0)
                        .any(|a| String::from_utf8_lossy(a).contains(&want))
                })
                && alive(*p)
        })
        .collect()
}

/// The FUSE daemons serving the union whose upper is `upper` (its `-o` names it).
fn fuse_daemons(upper: &Path) -> Vec<i32> {
    let want = format!("upperdir={},", upper.display());
    all_pids()
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                c.split(|b| *b == 0)
                    .any(|a| String::from_utf8_lossy(a).contains(&want))
            }) && alive(*p)
        })
        .collect()
}

/// Mount points at or under `dir` in this (the host's) mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == prefix || m.starts_with(&format!("{prefix}/")))
        .map(str::to_string)
        .collect()
}

/// The container's cgroup directories under every hierarchy (v1) or the unified one (v2).
fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    ["memory", "pids", "cpu", "cpuacct", "devices", "freezer"]
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c).join("strata").join(id))
        .chain([Path::new("/sys/fs/cgroup/strata").join(id)])
        .collect()
}

fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Nothing of container `id` is left running, mounted or in a cgroup, and no strata
/// process (supervisor, init, FUSE daemon) of the store remains.
fn assert_nothing_left(e: &Env, id: &str, procs: &Procs, when: &str) {
    poll(
        &format!("the container's processes to end ({when})"),
        20,
        || procs.left().is_empty(),
    );
    let m = mounts_under(&e.container_dir(id));
    assert!(m.is_empty(), "{when}: mounts left behind: {m:?}");
    for d in cgroup_dirs(id) {
        assert!(!d.exists(), "{when}: cgroup {} left behind", d.display());
    }
    // A FUSE daemon exits once its mount is gone, which it learns a moment later.
    let mut left = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        left = procs_naming(&e.root());
        if left.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cmds: Vec<String> = left
        .iter()
        .map(|p| {
            let c = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            format!("{p}: {}", String::from_utf8_lossy(&c).replace('\0', " "))
        })
        .collect();
    panic!("{when}: strata processes of the store left: {cmds:#?}");
}

/// The sequence numbers /w/log promises: "1\n2\n…m\n", maybe followed by a torn prefix
/// of the next line (an append the crash interrupted).
fn logged(log: &[u8]) -> usize {
    let text = String::from_utf8(log.to_vec())
        .unwrap_or_else(|_| panic!("/w/log is not text: {:?}", String::from_utf8_lossy(log)));
    let mut m = 0;
    let mut parts = text.split('\n').peekable();
    while let Some(line) = parts.next() {
        if parts.peek().is_none() {
            assert!(
                line.is_empty() || format!("{}", m + 1).starts_with(line),
                "/w/log ends with {line:?} after {m}"
            );
            break;
        }
        assert_eq!(line, format!("{}", m + 1), "/w/log line {} is wrong", m + 1);
        m += 1;
    }
    m
}

/// Check what the restarted container's root shows (read through its init's root).
/// `early`: the kill came before the writer logged anything, so there may be no log.
fn verify_root(root: &Path, what: &str, early: bool) -> usize {
    let m = match std::fs::read(root.join("w/log")) {
        Ok(log) => logged(&log),
        Err(e) if early && e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => panic!("{what}: /w/log: {e}"),
    };
    assert!(
        early || m >= 1,
        "{what}: the first fsync'ed log line is gone"
    );
    for i in 1..=m {
        let p = root.join(format!("w/d/f{i}"));
        let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{what}: {}: {e}", p.display()));
        let want = yes(&format!("f{i}-"), (i * 7919) % 200000 + 1);
        assert!(
            got == want,
            "{what}: fsync'ed /w/d/f{i} differs ({} bytes, want {})",
            got.len(),
            want.len()
        );
    }
    let blob = std::fs::read(root.join("big/blob")).unwrap();
    assert_eq!(blob.len(), BIG_BLOCKS * BLOCK, "{what}: /big/blob size");
    for (b, got) in blob.chunks(BLOCK).enumerate() {
        let new = (b >= 1).then(|| yes(&format!("b{b}-"), BLOCK));
        let ok = if b >= 1 && b <= m {
            new.as_deref() == Some(got)
        } else if b == m + 1 {
            // Written but not yet logged: old or new, never a mix.
            got == lower_block(b) || new.as_deref() == Some(got)
        } else {
            got == lower_block(b)
        };
        assert!(
            ok,
            "{what}: /big/blob block {b} is wrong (logged up to {m}): {:?}",
            String::from_utf8_lossy(&got[..32])
        );
    }
    m
}

/// Commands that may be the first one to see a crashed container.
const FIRST: [&str; 6] = ["ps", "inspect", "diff", "export", "logs", "stop"];

fn first_cmd(e: &Env, first: &str, name: &str) -> Vec<String> {
    let export = e.dir.join("export.tar").display().to_string();
    let args: Vec<&str> = match first {
        "ps" => vec!["ps", "-a"],
        "export" => vec!["export", "-o", &export, name],
        other => vec![other, name],
    };
    args.into_iter().map(String::from).collect()
}

/// The container (the only one in the store).
fn only_container(e: &Env) -> String {
    let ids: Vec<String> = std::fs::read_dir(e.root().join("containers"))
        .unwrap()
        .flatten()
        .filter(|d| d.path().join("config.json").is_file())
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids.len(), 1, "one container in the store: {ids:?}");
    ids.into_iter().next().unwrap()
}

/// `strata run -d ARGS` with its supervisor SIGKILLed `after` it was forked (while it
/// mounts the root, creates cgroups, starts init, or, when it was quick, afterwards); what
/// `run -d` said.
fn run_killing_the_supervisor(e: &Env, args: &[&str], after: Duration) -> Result<String, String> {
    let mut front = Command::new(strata_bin())
        .arg("--root")
        .arg(e.root())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let fpid = front.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(60);
    let supervisor = loop {
        let child = all_pids().into_iter().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rfind(')')
                    .and_then(|i| s[i + 1..].split_whitespace().nth(1))
                    .is_some_and(|pp| pp == fpid.to_string())
            })
        });
        if let Some(p) = child {
            break Some(p);
        }
        if front.try_wait().unwrap().is_some() {
            break None;
        }
        assert!(Instant::now() < deadline, "no supervisor forked by run -d");
        std::thread::sleep(Duration::from_millis(1));
    };
    // Forked but not yet known to ps: either it is still starting or it has gone.
    let supervisor = supervisor.or_else(|| {
        let id = only_container(e);
        e.state(&id)["supervisor"].as_i64().map(|p| p as i32)
    });
    std::thread::sleep(after);
    if let Some(p) = supervisor {
        kill9(p);
    }
    let out = front.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// One crash: start the writer, SIGKILL `kill` (at once, or `delay` after the writer's
/// first fsync, or `delay` into the start), check, restart, check, remove.
fn crash_once(
    e: &Env,
    driver: &str,
    n: usize,
    kill: Kill,
    delay: Option<Duration>,
    first: &str,
) -> String {
    let name = format!("crash-{driver}-{n}");
    let ctl = e.dir.join(format!("ctl-{name}"));
    std::fs::create_dir_all(&ctl).unwrap();
    let vol = format!("{}:/ctl", ctl.display());
    let args = [
        "run", "-d", "--name", &name, "--driver", driver, "-v", &vol, "crashimg", "sh", "-c",
        SCRIPT,
    ];
    // Whether the writer may not have logged anything before the kill.
    let early = delay.is_none() || kill == Kill::Starting;
    let mut run_d = "";
    let (id, procs) = if kill == Kill::Starting {
        let said = run_killing_the_supervisor(e, &args, delay.unwrap_or_default());
        run_d = if said.is_ok() {
            "run -d succeeded, "
        } else {
            "run -d failed, "
        };
        let id = only_container(e);
        match &said {
            Ok(out) => assert_eq!(out, &id),
            Err(msg) => assert!(
                msg.trim_end().lines().count() == 1 && msg.contains("supervisor died"),
                "run -d with its supervisor killed said: {msg}"
            ),
        }
        let procs = Procs::of(&id, e.state(&id)["pid"].as_i64().map(|p| p as i32));
        (id, procs)
    } else {
        let id = e.ok(&args).trim().to_string();
        let st = e.state(&id);
        let procs = Procs::of(&id, st["pid"].as_i64().map(|p| p as i32));
        assert!(
            procs.init.is_some(),
            "the container's init is not running: {st}"
        );
        let upper = e.container_dir(&id).join("upper");
        let daemons = fuse_daemons(&upper);
        assert_eq!(
            daemons.len(),
            usize::from(driver == "fuse"),
            "FUSE daemons for {}",
            upper.display()
        );
        // Without a delay the kill comes as soon as `run -d` returns; with one, it counts
        // from the writer's first fsync'ed sequence number.
        if let Some(delay) = delay {
            poll("the first log line", 60, || {
                std::fs::read(upper.join("w/log")).is_ok_and(|l| l.contains(&b'\n'))
            });
            std::thread::sleep(delay);
        }
        if kill != Kill::Supervisor {
            kill9(daemons[0]);
        }
        if kill != Kill::Daemon {
            kill9(st["supervisor"].as_i64().expect("the supervisor's pid") as i32);
        }
        (id, procs)
    };
    let cdir = e.container_dir(&id);
    let upper = cdir.join("upper");
    if kill != Kill::Daemon {
        // No strata command runs in between: the container must die with its supervisor.
        // Left may be the root's mount and its FUSE daemon, for reconcile to clean up. A
        // supervisor killed while starting may have left its mount helper running: it
        // finishes the mount on its own (the daemon then serves a live mount), so wait for
        // that to settle — a daemon with no live mount is still starting.
        let merged = cdir.join("merged");
        poll(
            "the container's processes to die with the supervisor",
            20,
            || {
                let daemons = fuse_daemons(&upper);
                procs.left().is_empty()
                    && procs_naming(&e.root()).iter().all(|p| daemons.contains(p))
                    && (daemons.is_empty() || !mounts_under(&merged).is_empty())
            },
        );
        // Whichever command comes first finds the stale state (mount, cgroup, "running")
        // and must cope with it.
        let args = first_cmd(e, first, &name);
        let out = e.strata(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "strata {first} as the first command after the crash failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = |ps: &str| ps.lines().find(|l| l.ends_with(&name)).map(str::to_string);
    // A container whose root daemon died fails its next write and exits; one whose
    // supervisor died while starting it never ran.
    poll("ps -a to show the container exited", 60, || {
        line(&e.ok(&["ps", "-a"])).is_some_and(|l| {
            l.contains("Exited (") || kill == Kill::Starting && l.contains("Created")
        })
    });
    let ps = line(&e.ok(&["ps", "-a"])).unwrap();
    if kill == Kill::Supervisor {
        assert!(ps.contains("Exited (255)"), "{ps}");
    }
    assert!(
        !e.ok(&["ps", "-q"]).contains(&id[..12]),
        "still listed as running"
    );
    assert_nothing_left(e, &id, &procs, "after the crash and ps");
    if driver == "fuse" {
        let lowers: Vec<String> = e
            .lowers(&id)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let out = e.strata(&[
            "fsck",
            upper.to_str().unwrap(),
            "--lowerdir",
            &lowers.join(":"),
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("clean"),
            "fsck after the crash: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The same check by the container's name: its upper over its own layers.
        let by_name = e.ok(&["fsck", &name]);
        assert_eq!(by_name, text, "fsck {name} and fsck of its upper differ");
    }
    let diff = e.ok(&["diff", &name]);
    assert!(
        early || diff.lines().any(|l| l == "C /big/blob") && diff.lines().any(|l| l == "A /w/log"),
        "diff after the crash: {diff}"
    );

    // Restart over the same upper, idle, and read the root back through it.
    std::fs::write(ctl.join("verify"), "").unwrap();
    e.ok(&["start", &name]);
    let st = e.state(&id);
    assert_eq!(st["status"], "running", "{st}");
    let init2 = st["pid"].as_i64().unwrap() as i32;
    let procs2 = Procs::of(&id, Some(init2));
    let m = verify_root(
        &PathBuf::from(format!("/proc/{init2}/root")),
        &format!("{name} restarted"),
        early,
    );
    e.ok(&["rm", "-f", &name]);
    assert!(!cdir.exists(), "{} left behind by rm", cdir.display());
    assert!(!e.ok(&["ps", "-a"]).contains(&name));
    assert_nothing_left(e, &id, &procs2, "after rm");
    let status = match ps.find("Exited (") {
        Some(i) => ps[i..].split(')').next().unwrap_or_default().to_string() + ")",
        None => "Created".to_string(),
    };
    format!("{run_d}{status}, {m} fsync'ed sequence numbers intact")
}

fn crash_loop(test: &'static str, driver: &str, kills: &[Kill], iters: usize, salt: u64) {
    let seed = seed(salt);
    eprintln!("{test}: seed {seed:#x}, {iters} iterations (STRATA_SEED={seed:#x} replays)");
    let replay = Replay {
        test,
        seed,
        iters,
        at: Cell::new(0),
        what: Default::default(),
    };
    let mut rng = Rng(seed);
    let e = Env::new();
    let start = rng.below(kills.len() as u64) as usize;
    for n in 0..iters {
        // Every target in turn from a random start, so each shows up even in short runs.
        let kill = kills[(start + n) % kills.len()];
        // One in five right away: a root daemon or supervisor dying while the container
        // starts up.
        let delay = match kill {
            // Long enough to reach every step of a start: the kernel's overlay mounts
            // faster than strata's daemon starts.
            Kill::Starting if driver == "overlay" => Some(Duration::from_millis(rng.below(20))),
            Kill::Starting => Some(Duration::from_millis(rng.below(60))),
            _ => (rng.below(5) != 0).then(|| Duration::from_millis(rng.below(2000))),
        };
        let first = match kill {
            Kill::Daemon => "ps",
            _ => FIRST[rng.below(FIRST.len() as u64) as usize],
        };
        replay.at.set(n);
        *replay.what.borrow_mut() =
            format!("{driver}, kill {kill:?}, delay {delay:?}, then strata {first}");
        let result = crash_once(&e, driver, n, kill, delay, first);
        let when = match (kill, delay) {
            (Kill::Starting, Some(d)) => format!("{} ms into run -d", d.as_millis()),
            (_, Some(d)) => format!("{} ms after the first fsync", d.as_millis()),
            (_, None) => "at once".into(),
        };
        eprintln!("{test}: iteration {n}: {driver}, kill {kill:?} {when}, then {first}: {result}");
    }
    let left: Vec<_> = std::fs::read_dir(e.root().join("containers"))
        .unwrap()
        .flatten()
        .map(|d| d.file_name())
        .collect();
    assert!(left.is_empty(), "left in containers/: {left:?}");
    let m = mounts_under(&e.root());
    assert!(m.is_empty(), "mounts left in the store: {m:?}");
    drop(e);
    drop(replay);
}

#[test]
fn fuse_container_survives_killed_supervisor_and_daemon() {
    crash_loop(
        "fuse_container_survives_killed_supervisor_and_daemon",
        "fuse",
        &[Kill::Supervisor, Kill::Daemon, Kill::Both, Kill::Starting],
        iterations(),
        1,
    );
}

#[test]
fn overlay_container_survives_killed_supervisor() {
    crash_loop(
        "overlay_container_survives_killed_supervisor",
        "overlay",
        &[Kill::Supervisor, Kill::Starting],
        iterations().div_ceil(2),
        2,
    );
}
