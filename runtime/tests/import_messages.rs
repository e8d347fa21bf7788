//! What `strata import` says about input it cannot take or must change: a file that is no
//! tar, a directory, a rootfs with device nodes. Also the names errors quote. Rootful.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{busybox_store, strata_bin};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn strata(store: &Path, args: &[&str]) -> Output {
    Command::new(strata_bin())
        .arg("--root")
        .arg(store)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-import-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_file_that_is_no_tar_is_named_not_quoted() {
    let dir = scratch("notar");
    let file = dir.join("passwd");
    let text = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        .repeat(20);
    std::fs::write(&file, &text).unwrap();
    let out = strata(&dir.join("store"), &["import", file.to_str().unwrap(), "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not a tar archive"), "{err}");
    assert!(err.contains(file.to_str().unwrap()), "{err}");
    assert!(
        !err.contains("root:x") && !err.contains("daemon"),
        "the file's contents: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_directory_is_refused_with_what_to_do() {
    let dir = scratch("dir");
    std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    let out = strata(
        &dir.join("store"),
        &["import", dir.join("rootfs").to_str().unwrap(), "x"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is a directory") && err.contains("tar -C"),
        "{err}"
    );
    assert!(!err.contains("blob"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn device_nodes_are_summed_up_in_one_line() {
    assert!(nix::unistd::geteuid().is_root(), "mknod needs root");
    let dir = scratch("devices");
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("dev")).unwrap();
    // As a Debian rootfs has them.
    for (i, name) in [
        "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx", "kmsg",
    ]
    .iter()
    .enumerate()
    {
        let st = Command::new("mknod")
            .arg(rootfs.join("dev").join(name))
            .args(["c", "1", &(i + 3).to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let tar = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let store = dir.join("store");
    let out = strata(&store, &["import", tar.to_str().unwrap(), "deb"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("skipped 9 device nodes"), "{err}");
    let out = strata(&store, &["import", "-q", tar.to_str().unwrap(), "deb"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sha256:"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn container_errors_quote_the_name_typed() {
    assert!(nix::unistd::geteuid().is_root(), "containers need root");
    let dir = scratch("names");
    let store = busybox_store(&dir);
    let out = strata(
        &store,
        &["run", "-d", "--name", "busy", "busybox", "sleep", "100"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    for args in [["rm", "busy"], ["start", "busy"]] {
        let out = strata(&store, &args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("container busy "), "{args:?}: {err}");
        assert!(!err.contains(&id), "{args:?} quotes the id: {err}");
    }
    let _ = strata(&store, &["rm", "-f", "busy"]);
    let _ = std::fs::remove_dir_all(&dir);
}
