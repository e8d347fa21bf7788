//! An ordinary user (no user namespace) mounting through fusermount3: the owner of a
//! read-only lower file may chmod and touch it, as on ext4 (the copy-up must not leave
//! the daemon locked out of the upper copy it made). ext4 (a plain copy of the tree,
//! owned by the same user) is the oracle.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use strata_tests::mount::{is_mounted, wait_until, TempDir};
use strata_tests::strata_bin;

const USER: &str = "strata-unpriv";

fn ensure_user() {
    strata_tests::users::ensure_user(USER);
    // An unprivileged mount opens /dev/fuse itself.
    std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).unwrap();
}

/// Run `sh -c script` as the user in `dir`: (exit code, stdout and stderr). The cd is
/// the user's: without allow_other not even root may enter the user's mount.
fn as_user(dir: &Path, script: &str) -> (i32, String) {
    let out = Command::new("setpriv")
        .args(["--reuid", USER, "--regid", USER, "--init-groups", "--"])
        .args(["sh", "-c", &format!("cd '{}' && {script}", dir.display())])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// The lower tree (and the ext4 copy): read-only files and a read-only directory.
fn build(root: &Path) {
    std::fs::create_dir_all(root.join("d/sub")).unwrap();
    for (f, data) in [
        ("ro", "ro\n"),
        ("ro2", "ro2\n"),
        ("ro3", "ro3\n"),
        ("ro4", "ro4\n"),
        ("ro5", "ro5\n"),
        ("d/f", "f\n"),
    ] {
        std::fs::write(root.join(f), data).unwrap();
        std::fs::set_permissions(root.join(f), std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    std::fs::write(root.join("big"), vec![7u8; 3 << 20]).unwrap();
    std::fs::set_permissions(root.join("big"), std::fs::Permissions::from_mode(0o444)).unwrap();
    for d in ["d/sub", "d"] {
        std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let st = Command::new("chown")
        .args(["-R", &format!("{USER}:{USER}")])
        .arg(root)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Each step as the user, with its exit status (ext4 and the mount must agree).
const STEPS: &[&str] = &[
    "chmod 406 ro",
    "touch ro2",
    "echo x >> ro3",
    "chmod 644 ro4 && echo more >> ro4",
    "setfattr -n user.x -v 1 ro5",
    "chmod 644 big && printf zz | dd of=big bs=1 seek=100 conv=notrunc status=none && chmod 444 big",
    "chmod 600 d/f",
    "touch d/sub",
    "touch -d @1000000 d/f",
    "truncate -s 1 d/f",
    "chmod 755 d && touch d/new",
];

/// Modes and contents of every file under `root`, as the user sees them.
fn state(root: &Path) -> String {
    let (code, out) = as_user(
        root,
        "find . -mindepth 1 ! -name new -printf '%p %m %s\\n' | sort; cat ro ro2 ro4 d/f; cksum big",
    );
    assert_eq!(code, 0, "{out}");
    out
}

#[test]
fn owner_of_read_only_lower_files_may_chmod_and_touch_them() {
    ensure_user();
    let dir = TempDir::new("unpriv");
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ext4 = dir.join("ext4");
    let (lower, upper, work, mnt) = (dir.join("l"), dir.join("u"), dir.join("w"), dir.join("m"));
    for d in [&upper, &work, &mnt] {
        std::fs::create_dir_all(d).unwrap();
    }
    build(&ext4);
    build(&lower);
    let st = Command::new("chown")
        .args([&format!("{USER}:{USER}")])
        .args([&upper, &work, &mnt])
        .status()
        .unwrap();
    assert!(st.success());
    let mount = format!(
        "{} -o lowerdir={},upperdir={},workdir={} {}",
        strata_bin().display(),
        lower.display(),
        upper.display(),
        work.display(),
        mnt.display()
    );
    let (code, out) = as_user(&dir.path, &mount);
    assert_eq!(code, 0, "unprivileged mount failed: {out}");
    assert!(is_mounted(&mnt));
    let umount = format!("fusermount3 -u {}", mnt.display());
    for step in STEPS {
        let want = as_user(&ext4, step).0;
        let got = as_user(&mnt, step);
        assert_eq!(got.0, want, "`{step}`: ext4 exit {want}, strata {got:?}");
    }
    let want = state(&ext4);
    assert_eq!(state(&mnt), want, "after the steps");
    // The same after a remount: the modes were stored, not just cached.
    let (code, out) = as_user(&dir.path, &umount);
    assert_eq!(code, 0, "{out}");
    assert!(wait_until(Duration::from_secs(10), || !is_mounted(&mnt)));
    let (code, out) = as_user(&dir.path, &mount);
    assert_eq!(code, 0, "remount: {out}");
    assert_eq!(state(&mnt), want, "after a remount");
    let (code, out) = as_user(&dir.path, &umount);
    assert_eq!(code, 0, "{out}");
}
