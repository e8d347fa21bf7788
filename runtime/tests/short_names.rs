//! Short image names resolve as podman resolves them: `app:1` finds `localhost/app:1`
//! (what podman tags its images with) or `docker.io/library/app:1`; when both are there
//! and differ, a clear error. Real podman archives (vfs storage of the test's own).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{busybox_store, strata_bin};
use std::path::Path;
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

fn ok(store: &Path, args: &[&str]) -> String {
    let out = strata(store, args);
    assert!(
        out.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn short_names_find_podman_localhost_images() {
    assert!(
        Path::new("/usr/bin/podman").exists(),
        "podman is missing: run scripts/setup"
    );
    let dir = std::env::temp_dir().join(format!("strata-short-{}", std::process::id()));
    busybox_store(&dir.join("src"));
    let tar = dir.join("src/busybox.tar");
    let podman = |args: &[&str]| {
        let out = Command::new("podman")
            .arg("--root")
            .arg(dir.join("podman/root"))
            .arg("--runroot")
            .arg(dir.join("podman/run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // podman names a short-named import localhost/app:1.
    podman(&["import", tar.to_str().unwrap(), "app:1"]);
    let archive = dir.join("app.tar");
    podman(&["save", "-o", archive.to_str().unwrap(), "localhost/app:1"]);
    let store = dir.join("store");
    ok(&store, &["load", "-i", archive.to_str().unwrap()]);
    let out = dir.join("out.tar");
    ok(&store, &["save", "app:1", "-o", out.to_str().unwrap()]);
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
    assert!(ok(&store, &["inspect", "app:1"]).contains("sha256:"));
    // The docker.io form of the same short name, another image: ambiguous.
    ok(
        &store,
        &[
            "import",
            tar.to_str().unwrap(),
            "docker.io/library/app:1",
            "--change",
            "CMD [\"/bin/true\"]",
        ],
    );
    let res = strata(&store, &["save", "app:1", "-o", out.to_str().unwrap()]);
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("ambiguous")
            && err.contains("localhost/app:1")
            && err.contains("docker.io/library/app:1"),
        "{err}"
    );
    // The full names still work.
    ok(
        &store,
        &["save", "localhost/app:1", "-o", out.to_str().unwrap()],
    );
    let _ = Command::new("rm").arg("-rf").arg(&dir).status();
}
