//! Rootless with no subordinate ids (no /etc/subuid entry: only the caller's own uid and
//! gid are mapped in the container's user namespace): containers still run. Root sets up
//! the user; the containers run as that user.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{as_user, busybox_store};
use std::process::Command;

/// An unprivileged user without subordinate id ranges.
const USER: &str = "strata-single";

fn ensure_single_id_user() {
    if Command::new("id").arg(USER).output().unwrap().status.code() != Some(0) {
        let st = Command::new("useradd")
            .args([
                "-M",
                "-s",
                "/bin/sh",
                "-K",
                "SUB_UID_COUNT=0",
                "-K",
                "SUB_GID_COUNT=0",
            ])
            .arg(USER)
            .status()
            .unwrap();
        // 9: created meanwhile by a parallel test.
        assert!(st.success() || st.code() == Some(9), "useradd failed");
    }
    for f in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        assert!(
            !text.lines().any(|l| l.starts_with(&format!("{USER}:"))),
            "{USER} has a range in {f}"
        );
    }
}

#[test]
fn single_id_rootless_runs_containers() {
    assert!(nix::unistd::geteuid().is_root(), "the setup needs root");
    ensure_single_id_user();
    // As distributions ship it.
    common::rootless_devices();
    let dir = std::env::temp_dir().join(format!("strata-single-{}", std::process::id()));
    busybox_store(&dir.join("src"));
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::copy(dir.join("src/busybox.tar"), home.join("busybox.tar")).unwrap();
    let st = Command::new("chown")
        .args(["-R", &format!("{USER}:{USER}")])
        .arg(&home)
        .status()
        .unwrap();
    assert!(st.success());
    let u = |args: &[&str]| as_user(USER, &home, args);
    let tar = home.join("busybox.tar");
    let (code, _, err) = u(&["import", tar.to_str().unwrap(), "busybox"]);
    assert_eq!(code, 0, "{err}");
    for driver in ["auto", "fuse"] {
        assert_eq!(
            u(&["run", "--rm", "--driver", driver, "busybox", "echo", "hello"]),
            (0, "hello\n".into(), String::new()),
            "{driver}"
        );
    }
    // The container's /dev/pts is there (mounted without gid=5, which is not mapped).
    let (code, out, err) = u(&["run", "--rm", "busybox", "sh", "-c", "ls -d /dev/pts/ptmx"]);
    assert_eq!((code, out.as_str()), (0, "/dev/pts/ptmx\n"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
