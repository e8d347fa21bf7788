//! The command-line mount forms: `strata mount -o OPTS MNT`, podman's mount_program
//! form `strata -o OPTS MNT` (empty options and `volatile` tolerated), the mount.fuse3
//! helper form `strata SOURCE MNT -o OPTS`, `-f` foreground, `strata umount MNT`, and
//! one-line errors with a non-zero exit and nothing mounted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use strata_tests::mount::{mount_fstype, pid_alive, pids_with_arg, reap_daemons, unmount_path};
use strata_tests::{is_mounted, strata_bin, sys, wait_until, Layer, TempDir};

/// Branches (one lower with content, upper, work) and a mount point; unmounted and
/// removed on drop.
struct Setup {
    dir: TempDir,
    lower: PathBuf,
    lower2: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    mnt: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = TempDir::new("cli");
        let lower = dir.join("lower");
        let lower2 = dir.join("lower2");
        let upper = dir.join("upper");
        let work = dir.join("work");
        let mnt = dir.join("mnt");
        for d in [&lower, &lower2, &upper, &work, &mnt] {
            std::fs::create_dir_all(d).unwrap();
        }
        Layer::new()
            .file("hello", "hello from lower\n")
            .file("d/f", "f\n")
            .build(&lower, strata_tests::Flavor::Strata);
        Layer::new()
            .file("bottom", "bottom\n")
            .file("hello", "hidden\n")
            .build(&lower2, strata_tests::Flavor::Strata);
        Setup {
            dir,
            lower,
            lower2,
            upper,
            work,
            mnt,
        }
    }

    fn opts(&self) -> String {
        format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            self.lower.display(),
            self.lower2.display(),
            self.upper.display(),
            self.work.display()
        )
    }

    fn mnt_str(&self) -> String {
        self.mnt.to_string_lossy().into_owned()
    }

    /// The mount works: merged content visible, a write lands in the upper.
    #[track_caller]
    fn assert_live(&self) {
        assert!(
            is_mounted(&self.mnt),
            "{} is not mounted",
            self.mnt.display()
        );
        let fstype = mount_fstype(&self.mnt).unwrap_or_default();
        assert!(
            fstype.starts_with("fuse"),
            "mounted as {fstype:?}, not FUSE"
        );
        assert_eq!(
            std::fs::read_to_string(self.mnt.join("hello")).unwrap(),
            "hello from lower\n"
        );
        assert_eq!(
            std::fs::read_to_string(self.mnt.join("bottom")).unwrap(),
            "bottom\n"
        );
        std::fs::write(self.mnt.join("written"), "w").unwrap();
        assert_eq!(
            std::fs::read_to_string(self.mnt.join("written")).unwrap(),
            "w"
        );
    }

    fn cleanup(&self) {
        let pids = pids_with_arg(&self.mnt_str());
        let _ = unmount_path(&self.mnt);
        reap_daemons(&pids);
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.cleanup();
    }
}

struct Out {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Run strata with `args`, output to files (a daemon may keep its stdio open), and
/// wait for it to exit.
fn strata(dir: &Path, args: &[&str]) -> Out {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let out_p = dir.join(format!("stdout-{n}"));
    let err_p = dir.join(format!("stderr-{n}"));
    let mut child = Command::new(strata_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_p).unwrap())
        .stderr(std::fs::File::create(&err_p).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", strata_bin().display()));
    let status = wait_child(&mut child, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("strata {args:?} did not exit within 60 s"));
    Out {
        status,
        stdout: std::fs::read_to_string(&out_p).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_p).unwrap_or_default(),
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[track_caller]
fn assert_ok(o: &Out, what: &str) {
    assert!(
        o.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        o.stdout,
        o.stderr
    );
}

/// A failed mount: non-zero exit, exactly one line on stderr, nothing mounted, no
/// daemon left behind.
#[track_caller]
fn assert_mount_error(s: &Setup, o: &Out, what: &str) {
    assert!(
        !o.status.success(),
        "{what}: exited 0\nstderr: {}",
        o.stderr
    );
    let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected one line on stderr, got:\n{}",
        o.stderr
    );
    assert!(!is_mounted(&s.mnt), "{what}: something got mounted");
    assert!(
        wait_until(Duration::from_secs(10), || pids_with_arg(&s.mnt_str())
            .is_empty()),
        "{what}: a process is left running for {}",
        s.mnt.display()
    );
}

#[test]
fn mount_subcommand_and_umount() {
    let s = Setup::new();
    let o = strata(&s.dir.path, &["mount", "-o", &s.opts(), &s.mnt_str()]);
    assert_ok(&o, "strata mount");
    s.assert_live();
    let daemons = pids_with_arg(&s.mnt_str());
    let o = strata(&s.dir.path, &["umount", &s.mnt_str()]);
    assert_ok(&o, "strata umount");
    assert!(!is_mounted(&s.mnt), "still mounted after strata umount");
    assert!(
        wait_until(Duration::from_secs(10), || daemons
            .iter()
            .all(|p| !pid_alive(*p))),
        "daemon still running after umount"
    );
    assert_eq!(
        std::fs::read_to_string(s.upper.join("written")).unwrap(),
        "w"
    );
}

#[test]
fn mount_program_form() {
    let s = Setup::new();
    let o = strata(&s.dir.path, &["-o", &s.opts(), &s.mnt_str()]);
    assert_ok(&o, "strata -o OPTS MNT");
    s.assert_live();
}

#[test]
fn mount_program_form_empty_options_and_volatile() {
    let s = Setup::new();
    let opts = format!(
        "lowerdir={}:{},,upperdir={},workdir={},volatile",
        s.lower.display(),
        s.lower2.display(),
        s.upper.display(),
        s.work.display()
    );
    let o = strata(&s.dir.path, &["-o", &opts, &s.mnt_str()]);
    assert_ok(&o, "podman form with ,, and volatile");
    s.assert_live();
}

#[test]
fn fuse_overlayfs_options_accepted() {
    let s = Setup::new();
    let opts = format!(
        "{},noacl,fsync=0,timeout=5,threaded=1,uidmapping=0:0:4294967295,gidmapping=0:0:4294967295",
        s.opts()
    );
    let o = strata(&s.dir.path, &["-o", &opts, &s.mnt_str()]);
    assert_ok(&o, "fuse-overlayfs options");
    s.assert_live();
}

#[test]
fn mount_fuse3_helper_form() {
    let s = Setup::new();
    let o = strata(&s.dir.path, &["none", &s.mnt_str(), "-o", &s.opts()]);
    assert_ok(&o, "strata SOURCE MNT -o OPTS");
    s.assert_live();
}

/// What `mount -t fuse.strata` does, through the real mount.fuse3 (`prog#source`
/// form, since mount.fuse3 resets PATH and strata may not be installed).
#[test]
fn through_mount_fuse3() {
    let s = Setup::new();
    let helper = ["/sbin/mount.fuse3", "/usr/sbin/mount.fuse3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("mount.fuse3 (package fuse3) is installed by scripts/setup");
    let source = format!("{}#none", strata_bin().display());
    let mut child = Command::new(helper)
        .args([&source, &s.mnt_str(), "-o", &s.opts()])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_child(&mut child, Duration::from_secs(60)).expect("mount.fuse3 hung");
    assert!(status.success(), "mount.fuse3 {source} exited {status:?}");
    s.assert_live();
}

#[test]
fn lowerdir_with_escaped_colon() {
    let s = Setup::new();
    let colon = s.dir.join("with:colon");
    std::fs::create_dir_all(&colon).unwrap();
    std::fs::write(colon.join("c"), "colon\n").unwrap();
    let opts = format!(
        "lowerdir={}:{}:{},upperdir={},workdir={}",
        colon.to_string_lossy().replace(':', "\\:"),
        s.lower.display(),
        s.lower2.display(),
        s.upper.display(),
        s.work.display()
    );
    let o = strata(&s.dir.path, &["-o", &opts, &s.mnt_str()]);
    assert_ok(&o, "lowerdir with \\:");
    s.assert_live();
    assert_eq!(std::fs::read_to_string(s.mnt.join("c")).unwrap(), "colon\n");
}

#[test]
fn read_only_without_upper() {
    let s = Setup::new();
    let opts = format!("lowerdir={}:{}", s.lower.display(), s.lower2.display());
    let o = strata(&s.dir.path, &["-o", &opts, &s.mnt_str()]);
    assert_ok(&o, "lowerdir only");
    assert!(is_mounted(&s.mnt));
    assert_eq!(
        std::fs::read_to_string(s.mnt.join("hello")).unwrap(),
        "hello from lower\n"
    );
    let e = std::fs::write(s.mnt.join("new"), "x").unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(libc::EROFS),
        "write on a read-only mount: {e}"
    );
}

fn foreground(args_before: &[&str]) {
    let s = Setup::new();
    let opts = s.opts();
    let mnt = s.mnt_str();
    let mut args: Vec<&str> = args_before.to_vec();
    args.extend(["-o", &opts, &mnt]);
    let log = s.dir.join("fg.log");
    let logf = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(strata_bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .unwrap();
    let live = wait_until(Duration::from_secs(30), || is_mounted(&s.mnt));
    if !live {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "strata {args:?} did not mount within 30 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "strata {args:?} exited although -f keeps it in the foreground"
    );
    s.assert_live();
    unmount_path(&s.mnt).unwrap();
    let status = wait_child(&mut child, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("foreground strata did not exit after umount"));
    assert!(
        status.success(),
        "foreground strata exited {status:?} after umount"
    );
}

#[test]
fn foreground_mount_subcommand() {
    foreground(&["mount", "-f"]);
}

#[test]
fn foreground_mount_program_form() {
    foreground(&["-f"]);
}

#[test]
fn umount_with_busy_mount_detaches() {
    let s = Setup::new();
    assert_ok(
        &strata(&s.dir.path, &["-o", &s.opts(), &s.mnt_str()]),
        "mount",
    );
    let daemons = pids_with_arg(&s.mnt_str());
    let held = sys::open(&s.mnt.join("hello"), libc::O_RDONLY, 0).unwrap();
    let o = strata(&s.dir.path, &["umount", &s.mnt_str()]);
    assert_ok(&o, "strata umount of a busy mount");
    assert!(
        !is_mounted(&s.mnt),
        "busy mount still attached after strata umount"
    );
    drop(held);
    assert!(
        wait_until(Duration::from_secs(10), || daemons
            .iter()
            .all(|p| !pid_alive(*p))),
        "daemon still running after the last file closed"
    );
}

#[test]
fn error_missing_lowerdir() {
    let s = Setup::new();
    let opts = format!(
        "upperdir={},workdir={}",
        s.upper.display(),
        s.work.display()
    );
    let o = strata(&s.dir.path, &["-o", &opts, &s.mnt_str()]);
    assert_mount_error(&s, &o, "no lowerdir");
    let o = strata(&s.dir.path, &["mount", "-o", &opts, &s.mnt_str()]);
    assert_mount_error(&s, &o, "strata mount without lowerdir");
}

#[test]
fn error_nonexistent_branch() {
    let s = Setup::new();
    let missing = s.dir.join("does-not-exist");
    let opts = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        s.lower.display(),
        missing.display(),
        s.upper.display(),
        s.work.display()
    );
    let o = strata(&s.dir.path, &["-o", &opts, &s.mnt_str()]);
    assert_mount_error(&s, &o, "nonexistent lower branch");
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        s.lower.display(),
        missing.display(),
        s.work.display()
    );
    let o = strata(&s.dir.path, &["-o", &opts, &s.mnt_str()]);
    assert_mount_error(&s, &o, "nonexistent upper");
}

#[test]
fn error_bad_option() {
    let s = Setup::new();
    let opts = format!("{},no_such_option_xyz=1", s.opts());
    let o = strata(&s.dir.path, &["-o", &opts, &s.mnt_str()]);
    assert_mount_error(&s, &o, "unknown option");
}

#[test]
fn error_upper_without_work() {
    let s = Setup::new();
    let opts = format!(
        "lowerdir={},upperdir={}",
        s.lower.display(),
        s.upper.display()
    );
    let o = strata(&s.dir.path, &["-o", &opts, &s.mnt_str()]);
    assert_mount_error(&s, &o, "upperdir without workdir");
}

#[test]
fn error_missing_mountpoint() {
    let s = Setup::new();
    let nowhere = s.dir.join("no-mountpoint");
    let o = strata(&s.dir.path, &["-o", &s.opts(), &nowhere.to_string_lossy()]);
    assert!(
        !o.status.success(),
        "mount on a missing mount point exited 0"
    );
    let lines = o.stderr.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(lines, 1, "expected one line on stderr, got:\n{}", o.stderr);
    assert!(!is_mounted(&nowhere));
}

#[test]
fn error_umount_not_mounted() {
    let s = Setup::new();
    let o = strata(&s.dir.path, &["umount", &s.mnt_str()]);
    assert!(
        !o.status.success(),
        "strata umount of an unmounted dir exited 0"
    );
    let lines = o.stderr.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(lines, 1, "expected one line on stderr, got:\n{}", o.stderr);
}
