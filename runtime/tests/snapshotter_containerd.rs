//! `strata snapshotter` under Debian's containerd (1.6) as a proxy plugin: import a
//! strata-saved busybox with `ctr image import --snapshotter strata`, run a container on
//! it, list the committed layers, and find them all again after the snapshotter is killed
//! and restarted. Everything (containerd's root, state and sockets) lives in one temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod ctrd;
use ctrd::{wait, Env};
use std::path::Path;
use std::time::{Duration, Instant};

// A namespace of the test's own (containerd 1.6 keeps runc's state per namespace).
const NAMESPACE: &str = "strata-snapshotter-test";

/// Distinct inodes under `dir`, itself included (du's count).
fn count_inodes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        seen.insert(md.ino());
        if md.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    seen.len() as u64
}

#[test]
fn containerd_runs_on_strata_snapshots() {
    let t0 = Instant::now();
    let dir = ctrd::test_dir("snapshotter-containerd");
    let mut env = Env::new(dir.clone(), NAMESPACE);

    // Two layers: busybox and one that adds /two and deletes /etc/group (a whiteout that
    // containerd applies through the overlay mount this snapshotter returns).
    let store = common::busybox_store(&dir.join("bb"));
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN rm /etc/group && echo two > /two\n",
    )
    .unwrap();
    let build = ["build", "-q", "-t", "two", ctx.to_str().unwrap()];
    common::expect_ok(&build, common::strata_at(&store, &build));
    let archive = dir.join("two.tar");
    let save = ["save", "-o", archive.to_str().unwrap(), "two"];
    common::expect_ok(&save, common::strata_at(&store, &save));

    env.start_snapshotter();
    env.start_containerd(None);
    let imported = env.import(&archive);
    let image = env
        .ctr_ok(&["image", "ls", "-q"])
        .lines()
        .find(|l| l.contains("two"))
        .unwrap_or_else(|| panic!("no image after import: {imported}"))
        .to_string();

    let out = env.ctr_ok(&[
        "run",
        "--rm",
        "--snapshotter",
        "strata",
        &image,
        "ctr1",
        "sh",
        "-c",
        "echo hi; cat /two; test -e /etc/group || echo gone",
    ]);
    assert_eq!(out, "hi\ntwo\ngone\n", "container output");

    let layers = env.committed();
    assert_eq!(layers.len(), 2, "committed snapshots: {layers:?}");
    // The db the snapshotter keeps says the same as containerd's listing.
    let db = std::fs::read_to_string(dir.join("snaproot/metadata.json")).unwrap();
    assert!(db.contains("\"committed\""), "metadata: {db}");

    // A killed snapshotter comes back with every snapshot: the listing is the same and a
    // second container prepares on top of the committed layers.
    env.kill_snapshotter();
    env.start_snapshotter();
    // containerd's client reconnects with a backoff: the first calls may still fail.
    wait(
        "containerd to reach the restarted snapshotter",
        Duration::from_secs(30),
        || {
            env.ctr(&["snapshots", "--snapshotter", "strata", "ls"])
                .status
                .success()
        },
    );
    assert_eq!(
        env.committed(),
        layers,
        "committed snapshots after a restart"
    );
    let out = env.ctr_ok(&[
        "run",
        "--rm",
        "--snapshotter",
        "strata",
        &image,
        "ctr2",
        "cat",
        "/etc/passwd",
    ]);
    assert!(out.starts_with("root:x:0:0"), "ctr2: {out}");
    // Usage of the layer: what du says of its fs directory (allocated bytes).
    // The inode counts containerd reports are those of each layer's fs/ on disk.
    let usage = env.ctr_ok(&["snapshots", "--snapshotter", "strata", "usage"]);
    let db: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("snaproot/metadata.json")).unwrap())
            .unwrap();
    for name in &layers {
        let line = usage
            .lines()
            .find(|l| l.starts_with(name.as_str()))
            .unwrap_or_else(|| panic!("no usage of {name}: {usage}"));
        let inodes: u64 = line.split_whitespace().last().unwrap().parse().unwrap();
        // containerd names the backend's snapshot NAMESPACE/N/NAME.
        let (_, rec) = db["snapshots"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.ends_with(&format!("/{name}")))
            .unwrap_or_else(|| panic!("{name} not in the snapshotter's db"));
        let fs = dir.join(format!("snaproot/snapshots/{}/fs", rec["id"]));
        assert_eq!(inodes, count_inodes(&fs), "inodes of {name}");
    }
    eprintln!(
        "snapshotter_containerd: {} layer(s), {:.1} s",
        layers.len(),
        t0.elapsed().as_secs_f64()
    );
}
