//! The root mount's type and flags, panicking requests, foreign mounts on top.

use super::*;

/// A root mount shows its subtype: `fuse.strata` in /proc/mounts, found by
/// `findmnt -t fuse.strata` and unmounted by `umount -a -t fuse.strata` (run in a private
/// namespace so that only copies are unmounted, never other tests' mounts).
#[test]
fn root_mount_shows_as_fuse_strata() {
    let mut s = Setup::new();
    s.mount("upper", "");
    let e = top_entry(&s.mnt).unwrap();
    let dash = e.iter().position(|f| f == "-").unwrap();
    assert_eq!(e[dash + 1], "fuse.strata", "{e:?}");
    let out = Command::new("findmnt")
        .args(["-n", "-o", "TARGET", "-t", "fuse.strata", &s.mnt_str()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), s.mnt_str());
    let script = format!(
        "umount -a -t fuse.strata; ! grep -q ' {} ' /proc/self/mounts",
        s.mnt.display()
    );
    let st = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .status()
        .unwrap();
    assert!(
        st.success(),
        "umount -a -t fuse.strata left {}",
        s.mnt.display()
    );
    assert!(
        is_mounted(&s.mnt),
        "the private namespace's umount reached ours"
    );
}

/// The mount flags of the top mount at `p` (mountinfo's per-mount options).
pub(crate) fn mount_flags(p: &Path) -> Vec<String> {
    top_entry(p).unwrap()[5]
        .split(',')
        .map(str::to_string)
        .collect()
}

/// Run `prog args` as nobody (uid/gid 65534) and return its stdout, or None if it failed.
pub(crate) fn as_nobody(prog: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(prog)
        .args(args)
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// nodev and nosuid are accepted (they were refused as conflicting with root's dev,suid)
/// and take effect; without them a root mount keeps dev,suid.
#[test]
fn nodev_nosuid_are_honoured() {
    let mut s = Setup::new();
    sys::mknod(&s.lower.join("null"), libc::S_IFCHR | 0o666, 1, 3).unwrap();
    let id = s.lower.join("id");
    std::fs::copy("/usr/bin/id", &id).unwrap();
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o4755)).unwrap();
    // nobody must reach the mount point.
    let mut d = s.mnt.clone();
    while d.pop() && d != Path::new("/") {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode | 0o055)).unwrap();
    }

    let (pid, _) = s.mount("upper", "");
    let flags = mount_flags(&s.mnt);
    assert!(
        !flags.iter().any(|f| f == "nodev" || f == "nosuid"),
        "{flags:?}"
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(s.mnt.join("null"))
        .expect("a device node opens on a dev mount");
    assert_eq!(as_nobody(&s.mnt.join("id"), &["-u"]).as_deref(), Some("0"));
    sys::umount2(&s.mnt, 0).unwrap();
    assert_exits(pid, "unmount");

    let (pid, _) = s.mount("upper", "nodev,nosuid");
    let flags = mount_flags(&s.mnt);
    assert!(flags.iter().any(|f| f == "nodev"), "{flags:?}");
    assert!(flags.iter().any(|f| f == "nosuid"), "{flags:?}");
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open(s.mnt.join("null"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    assert_eq!(
        as_nobody(&s.mnt.join("id"), &["-u"]).as_deref(),
        Some("65534")
    );
    sys::umount2(&s.mnt, 0).unwrap();
    assert_exits(pid, "unmount");

    // The user's later flag wins over an earlier one.
    let (_pid, _) = s.mount("upper", "nodev,dev,noexec");
    let flags = mount_flags(&s.mnt);
    assert!(!flags.iter().any(|f| f == "nodev"), "{flags:?}");
    assert!(flags.iter().any(|f| f == "noexec"), "{flags:?}");
    let e = Command::new(s.mnt.join("id")).output().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
}

/// A panicking request (debug builds' STRATA_TEST_PANIC_ON hook) is answered EIO and
/// logged; after more panics than request threads the mount still serves.
#[test]
fn panicking_request_answers_eio_and_the_mount_survives() {
    let s = Setup::new();
    let opts = format!("{},threads=2", s.opts("upper"));
    let log = s.dir.join("panic.log");
    let st = Command::new(strata_bin())
        .args(["mount", "--log-file"])
        .arg(&log)
        .args(["-o", &opts])
        .arg(&s.mnt)
        .env("STRATA_TEST_PANIC_ON", "strata-panic-probe")
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let daemons = pids_with_arg(&s.mnt_str());
    let probe = s.mnt.join("strata-panic-probe");
    // Each probe runs on a helper thread so a dead mount fails the test instead of
    // hanging it.
    for i in 0..8 {
        let p = probe.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(sys::lstat(&p).map(|_| ()));
        });
        let r = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("lookup {i} hung: the mount stopped serving"));
        assert_eq!(r, Err(Errno::EIO), "lookup {i}");
    }
    assert_eq!(
        std::fs::read_to_string(s.mnt.join("hello")).unwrap(),
        "hello from lower\n"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("ERROR") && text.contains("panicked") && text.contains("lookup"),
        "{text}"
    );
    sys::umount2(&s.mnt, 0).unwrap();
    reap_daemons(&daemons);
}

/// `strata umount` takes only a strata mount: a tmpfs mounted over one is refused and left,
/// and the strata mount beneath keeps serving.
#[test]
fn strata_umount_refuses_a_foreign_mount_on_top() {
    let mut s = Setup::new();
    s.mount("upper", "");
    sys::mount("tmpfs", &s.mnt, "tmpfs", 0, "size=1m").unwrap();
    let out = Command::new(strata_bin())
        .args(["umount", &s.mnt_str()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "strata umount took a tmpfs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a strata mount"), "{err}");
    let e = top_entry(&s.mnt).unwrap();
    assert!(e.contains(&"tmpfs".to_string()), "{e:?}");
    sys::umount2(&s.mnt, 0).unwrap();
    s.assert_serves("upper", "under-tmpfs");
}
