//! A mount's life: a daemon ends only its own FUSE connection. It never unmounts a path
//! whose top mount is someone else's (a newer mount at the same path, a mount stacked on
//! it), it exits when its connection ends or is stopped even while a copy of its mount
//! lives on in another mount namespace, a clean exit logs no warning, the mount shows as
//! `fuse.strata`, and the VFS flags the user gives (nodev, nosuid, ...) are honoured.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use strata_tests::mount::{pid_alive, pids_with_arg, reap_daemons};
use strata_tests::{is_mounted, run_strata, strata_bin, sys, wait_until, Errno, Layer, TempDir};

mod flags;

/// Branches (one lower, two uppers) and a mount point; what is mounted is unmounted on drop.
struct Setup {
    dir: TempDir,
    lower: PathBuf,
    mnt: PathBuf,
    mounts: usize,
    daemons: Vec<i32>,
}

impl Setup {
    fn new() -> Self {
        let dir = TempDir::new("life");
        let lower = dir.join("lower");
        let mnt = dir.join("mnt");
        for d in [&lower, &mnt] {
            std::fs::create_dir_all(d).unwrap();
        }
        Layer::new()
            .file("hello", "hello from lower\n")
            .build(&lower, strata_tests::Flavor::Strata);
        Setup {
            dir,
            lower,
            mnt,
            mounts: 0,
            daemons: Vec::new(),
        }
    }

    fn mnt_str(&self) -> String {
        self.mnt.to_string_lossy().into_owned()
    }

    /// Options for branches with upper `upper` (made on first use).
    fn opts(&self, upper: &str) -> String {
        let u = self.dir.join(upper);
        let w = self.dir.join(&format!("{upper}-work"));
        for d in [&u, &w] {
            std::fs::create_dir_all(d).unwrap();
        }
        format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower.display(),
            u.display(),
            w.display()
        )
    }

    /// Mount with upper `upper` (plus `extra` options) on top of whatever is at the mount
    /// point; returns the new daemon's pid and its log file.
    fn mount(&mut self, upper: &str, extra: &str) -> (i32, PathBuf) {
        let (new, log) = self.mount_any(upper, extra);
        assert_eq!(new.len(), 1, "one new daemon expected, got {new:?}");
        (new[0], log)
    }

    /// Mount as [`Setup::mount`]; returns the new daemons found (none if the mount was
    /// already lost again).
    fn mount_any(&mut self, upper: &str, extra: &str) -> (Vec<i32>, PathBuf) {
        let before = pids_with_arg(&self.mnt_str());
        self.mounts += 1;
        let log = self.dir.join(&format!("strata-{}.log", self.mounts));
        let mut opts = self.opts(upper);
        if !extra.is_empty() {
            opts = format!("{opts},{extra}");
        }
        let log_s = log.to_string_lossy().into_owned();
        let (ok, text) = run_strata(
            &["mount", "--log-file", &log_s, "-o", &opts, &self.mnt_str()],
            &self.dir.join("cli.log"),
        );
        assert!(ok, "strata mount -o {opts} failed:\n{text}");
        let new: Vec<i32> = pids_with_arg(&self.mnt_str())
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        self.daemons.extend(&new);
        (new, log)
    }

    #[track_caller]
    fn assert_serves(&self, upper: &str, probe: &str) {
        assert_eq!(
            std::fs::read_to_string(self.mnt.join("hello")).unwrap(),
            "hello from lower\n"
        );
        std::fs::write(self.mnt.join(probe), probe).unwrap();
        assert_eq!(
            std::fs::read_to_string(self.dir.join(upper).join(probe)).unwrap_or_default(),
            probe,
            "a write through {} did not reach upper {upper}",
            self.mnt.display()
        );
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for _ in 0..8 {
            if !is_mounted(&self.mnt) {
                break;
            }
            let _ = sys::umount2(&self.mnt, libc::MNT_DETACH);
        }
        reap_daemons(&self.daemons);
    }
}

/// The device ("major:minor") of the top mount at `p`, from /proc/self/mountinfo.
fn top_dev(p: &Path) -> Option<String> {
    top_entry(p).map(|f| f[2].clone())
}

/// Fields of the top mountinfo line at `p` (a mount stacked at the same point has the
/// one beneath as its parent).
fn top_entry(p: &Path) -> Option<Vec<String>> {
    let want = p.to_string_lossy().replace(' ', "\\040");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let at: Vec<Vec<String>> = info
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|f| f.len() > 4 && f[4] == want)
        .collect();
    at.iter()
        .rev()
        .find(|m| !at.iter().any(|o| o[1] == m[0]))
        .cloned()
}

/// A process in a new, private mount namespace holding a copy of every mount.
struct Holder(Child);

impl Holder {
    fn new(mnt: &Path) -> Holder {
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sleep", "120"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let pid = child.id();
        let mine = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        let want = format!(" {} ", mnt.display());
        let ok = wait_until(Duration::from_secs(10), || {
            std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|n| n != mine)
                && std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
                    .is_ok_and(|m| m.contains(&want))
        });
        assert!(ok, "unshare did not set up a namespace holding {want}");
        Holder(child)
    }

    /// `p` as seen from inside the holder's namespace.
    fn inside(&self, p: &Path) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{}", self.0.id(), p.display()))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[track_caller]
fn assert_exits(pid: i32, why: &str) {
    assert!(
        wait_until(Duration::from_secs(20), || !pid_alive(pid)),
        "daemon {pid} still running 20 s after {why}"
    );
}

#[track_caller]
fn assert_clean_log(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        !text.contains("Failed to umount") && !text.contains("WARN") && !text.contains("ERROR"),
        "{}:\n{text}",
        log.display()
    );
}

/// The case: a namespace holds a copy, the path is unmounted and mounted again, the
/// namespace goes away, and the old daemon, exiting, must leave the new mount alone.
#[test]
fn old_daemon_leaves_a_newer_mount_alone() {
    let mut s = Setup::new();
    let (old, old_log) = s.mount("upper", "");
    let holder = Holder::new(&s.mnt);
    sys::umount2(&s.mnt, 0).unwrap();
    assert!(
        pid_alive(old),
        "the copy in the namespace should keep {old} serving"
    );
    let (_new, new_log) = s.mount("upper2", "");
    let dev = top_dev(&s.mnt);
    drop(holder);
    assert_exits(old, "the last copy of its mount went away");
    assert!(
        is_mounted(&s.mnt),
        "the old daemon took the new mount with it"
    );
    assert_eq!(top_dev(&s.mnt), dev, "the mount at the path changed");
    s.assert_serves("upper2", "after");
    assert_clean_log(&old_log);
    assert_clean_log(&new_log);
}

/// Two strata mounts stacked on one path: one unmount removes only the top one.
#[test]
fn stacked_mounts_one_umount_removes_one() {
    let mut s = Setup::new();
    let (_a, a_log) = s.mount("upper", "");
    let a_dev = top_dev(&s.mnt);
    let (b, b_log) = s.mount("upper2", "");
    assert_ne!(top_dev(&s.mnt), a_dev);
    s.assert_serves("upper2", "on-top");
    let out = Command::new(strata_bin())
        .args(["umount", &s.mnt_str()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_exits(b, "its unmount");
    assert_eq!(top_dev(&s.mnt), a_dev, "the mount beneath went too");
    s.assert_serves("upper", "beneath");
    assert_clean_log(&a_log);
    assert_clean_log(&b_log);
}

/// SIGTERM to the bottom daemon of a stack stops it without unmounting the mount on top.
#[test]
fn sigterm_leaves_a_mount_stacked_on_top() {
    let mut s = Setup::new();
    let (a, _) = s.mount("upper", "");
    let (_b, _) = s.mount("upper2", "");
    let b_dev = top_dev(&s.mnt);
    sys::kill(a, libc::SIGTERM).unwrap();
    assert_exits(a, "SIGTERM");
    assert_eq!(
        top_dev(&s.mnt),
        b_dev,
        "SIGTERM to the lower daemon took the top mount"
    );
    s.assert_serves("upper2", "still");
}

/// SIGTERM to a daemon whose mount has a copy in another namespace: it unmounts its own
/// mount, ends the connection and exits (it used to serve the copy forever).
#[test]
fn sigterm_with_a_copy_in_another_namespace_exits() {
    let mut s = Setup::new();
    let (pid, log) = s.mount("upper", "");
    let holder = Holder::new(&s.mnt);
    let inside = holder.inside(&s.mnt.join("hello"));
    assert_eq!(
        std::fs::read_to_string(&inside).unwrap(),
        "hello from lower\n"
    );
    sys::kill(pid, libc::SIGTERM).unwrap();
    assert_exits(pid, "SIGTERM");
    assert!(!is_mounted(&s.mnt), "SIGTERM did not unmount");
    // The copy is now a dead connection, not a mount still served by someone.
    // ENOTCONN once the daemon's exit closed /dev/fuse; ECONNABORTED when it aborted the
    // connection through fusectl (mounted on some machines, or by another test meanwhile).
    let e = std::fs::read_to_string(&inside).unwrap_err();
    assert!(
        matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)),
        "{e}"
    );
    assert_clean_log(&log);
}

/// A daemon whose path was already unmounted here, stopped by SIGTERM while its copy lives
/// on elsewhere and a new mount sits at the path: exits, and the new mount stays.
#[test]
fn sigterm_after_remount_exits_and_leaves_the_new_mount() {
    let mut s = Setup::new();
    let (old, _) = s.mount("upper", "");
    let holder = Holder::new(&s.mnt);
    sys::umount2(&s.mnt, 0).unwrap();
    let (_new, _) = s.mount("upper2", "");
    let dev = top_dev(&s.mnt);
    sys::kill(old, libc::SIGTERM).unwrap();
    assert_exits(old, "SIGTERM");
    assert_eq!(top_dev(&s.mnt), dev);
    s.assert_serves("upper2", "new");
    drop(holder);
}

/// A clean exit (unmount) logs nothing at warning level.
#[test]
fn clean_exit_logs_no_warning() {
    let mut s = Setup::new();
    let (pid, log) = s.mount("upper", "");
    s.assert_serves("upper", "x");
    // Another test of this binary may fork a namespace holder while this one has a file
    // open on its mount; the child keeps that fd (it never execs) until its test ends, and
    // the umount meanwhile answers EBUSY. That is the harness, not strata: wait it out.
    let mut last = None;
    let done = wait_until(Duration::from_secs(20), || match sys::umount2(&s.mnt, 0) {
        Ok(()) => true,
        Err(e) => {
            assert_eq!(e, Errno::EBUSY, "umount {}", s.mnt.display());
            last = Some(e);
            false
        }
    });
    assert!(done, "umount {}: {last:?} for 20 s", s.mnt.display());
    assert_exits(pid, "unmount");
    assert_clean_log(&log);
    let (pid, log) = s.mount("upper", "");
    sys::kill(pid, libc::SIGTERM).unwrap();
    assert_exits(pid, "SIGTERM");
    assert!(!is_mounted(&s.mnt));
    assert_clean_log(&log);
}

/// umount + mount on one path in a tight loop while a reader/writer load runs: no mount is
/// ever lost and no write lands on the bare directory.
///
/// The load works through a directory fd of the current mount, so it keeps each detached
/// mount busy for a moment and its daemon ends at a random time relative to the next
/// mount (the race that used to take the newer mount down). Writes through the path
/// happen only while this loop knows its mount is there: one found on the bare
/// directory means a mount was lost in between.
#[test]
fn remount_loop_under_load_loses_nothing() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    const ITERATIONS: usize = 60;
    let mut s = Setup::new();
    s.mount("upper", "");
    let cur = Arc::new(Mutex::new(Arc::new(sys::Dir::open(&s.mnt).unwrap())));
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for t in 0..2 {
        let (cur, stop, ops) = (cur.clone(), stop.clone(), ops.clone());
        load.push(std::thread::spawn(move || {
            let mut i = 0u64;
            // Bounded: the main loop sets `stop`; the count caps it in any case.
            while !stop.load(Ordering::Relaxed) && i < 10_000_000 {
                i += 1;
                let dir = cur.lock().unwrap().clone();
                if dir.put(&format!("w{t}-{}", i % 50), b"data").is_ok() {
                    ops.fetch_add(1, Ordering::Relaxed);
                }
                if dir.read("hello").is_ok() {
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut lost = 0;
    let mut dev = top_dev(&s.mnt);
    let mut last = s.daemons.clone();
    for i in 0..ITERATIONS {
        if dev.is_none() {
            // Lost already (counted): nothing of ours to check.
        } else if top_dev(&s.mnt) != dev {
            lost += 1;
            eprintln!("iteration {i}: the mount made in the last one is gone");
        } else {
            // Through the path: lands in the upper, or on the bare dir if the mount was
            // lost since the check above.
            let _ = std::fs::write(s.mnt.join(format!("probe-{i}")), b"p");
        }
        while is_mounted(&s.mnt) {
            sys::umount2(&s.mnt, libc::MNT_DETACH).unwrap();
        }
        last = s.mount_any("upper", "").0;
        dev = top_dev(&s.mnt);
        if dev.is_none() {
            lost += 1;
            eprintln!("iteration {i}: the new mount was gone at once");
            continue;
        }
        if let Ok(d) = sys::Dir::open(&s.mnt) {
            *cur.lock().unwrap() = Arc::new(d);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.join().unwrap();
    }
    // The load has let go of every old mount: their daemons end now, and must leave the
    // last mount alone.
    drop(cur);
    let old: Vec<i32> = s
        .daemons
        .iter()
        .copied()
        .filter(|p| !last.contains(p))
        .collect();
    reap_daemons(&old);
    if dev.is_some() && top_dev(&s.mnt) != dev {
        lost += 1;
        eprintln!("the last mount is gone after the old daemons exited");
    }
    while is_mounted(&s.mnt) {
        sys::umount2(&s.mnt, libc::MNT_DETACH).unwrap();
    }
    let daemons = s.daemons.clone();
    reap_daemons(&daemons);
    let bare: Vec<_> = std::fs::read_dir(&s.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    eprintln!(
        "remount loop: {ITERATIONS} iterations, {lost} lost mounts, {} load ops, {} files on the bare dir",
        ops.load(Ordering::Relaxed),
        bare.len()
    );
    assert_eq!(lost, 0, "mounts lost in {ITERATIONS} iterations");
    assert!(
        bare.is_empty(),
        "writes landed on the bare directory: {bare:?}"
    );
}
