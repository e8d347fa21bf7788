//! podman itself with strata as the overlay driver's `mount_program` (storage.conf), rootful
//! with `--uidmap 0:100000:65536` and rootless (a user with /etc/subuid ranges, with
//! `--userns=keep-id` and `--uidmap 0:1:5000`): run, exec, build with several RUN steps,
//! commit, diff, export and save, asserting ownership and content inside the container,
//! through the mount from outside it, on disk in the upper, and in the tars podman writes.
//! Also: the daemon serving each rootfs is the program under test, and none is left after
//! podman unmounted everything.
//!
//! Every test has its own store and config files, no network and no pulls (the base image
//! is `podman import` of a busybox-static rootfs), and every podman command a time limit.
//! `STRATA_PODMAN_MOUNT_PROGRAM=/usr/bin/fuse-overlayfs` runs the same tests against
//! fuse-overlayfs, the reference strata must match (a check of the tests themselves).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod build;
#[path = "../common/mod.rs"]
mod common;
mod harness;
mod tars;

use harness::{owner, Podman, BASE, CTR, ROOTFUL_MAP};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tars::{assert_tar_file, file, saved_layers, tar_entries};

/// How container ids appear outside, in the store's user namespace (the host's rootful,
/// podman's own rootless): through the FUSE mount, and in the upper directory on disk. The
/// upper keeps the container's ids unshifted, as fuse-overlayfs does: containers/storage
/// gives a container layer on a mount_program no id map of its own (the program shifts),
/// so that its diff is the layer as it is.
struct Ids {
    /// `podman run`/`exec` options selecting the user namespace.
    opts: Vec<String>,
    /// `podman exec` options to act as the container's root.
    root: Vec<String>,
    /// Container uid (or gid, with `true`) to the id through the mount.
    mount: Box<dyn Fn(u32, bool) -> u32>,
}

/// The changes every run test makes in /data as the container's root, and prints stats of.
const MUTATE: &str = "set -e
stat -c '%u:%g %n' /etc/passwd /bin/busybox /data /data/keep /data/owned /data/sub/deep
echo new > /data/new
mkdir /data/newdir
echo f > /data/newdir/f
chown 5:6 /data/newdir/f
echo more >> /data/keep
rm /data/del
chown 7:8 /data/owned
mv /data/sub /data/moved
stat -c '%u:%g %n' /data/new /data/newdir /data/newdir/f /data/owned /data/moved/deep
cat /data/keep /data/moved/deep";

/// What MUTATE prints: image files keep their container owners whatever the mapping.
const MUTATE_OUT: &str = "0:0 /etc/passwd
0:0 /bin/busybox
0:0 /data
0:0 /data/keep
1000:1000 /data/owned
0:0 /data/sub/deep
0:0 /data/new
0:0 /data/newdir
5:6 /data/newdir/f
7:8 /data/owned
0:0 /data/moved/deep
keep
more
deep
";

/// What /data holds after MUTATE, checked in every image and tar made from the container.
const CHECK: &str =
    "stat -c '%u:%g %n' /etc/passwd /data/new /data/newdir/f /data/owned /data/moved/deep
cat /data/new /data/keep /data/moved/deep /data/owned
test ! -e /data/del && test ! -e /data/sub && echo gone";

const CHECK_OUT: &str = "0:0 /etc/passwd
0:0 /data/new
5:6 /data/newdir/f
7:8 /data/owned
0:0 /data/moved/deep
new
keep
more
deep
owned
gone
";

/// Run a container with `ids`, make MUTATE's changes in it and check them from the inside,
/// through the mount and on disk while it runs; then, stopped: `podman diff`, `commit` (the
/// commit run with the mapping and without one), `save` (the committed layer) and `export`.
/// `extra(p, merged, upper)` checks more while the container runs.
fn run_commit_diff_export(p: &Podman, ids: &Ids, extra: impl Fn(&Podman, &str, &Path)) {
    let opts: Vec<&str> = ids.opts.iter().map(String::as_str).collect();
    let root: Vec<&str> = ids.root.iter().map(String::as_str).collect();
    let mut run = vec!["run", "-d", "--pull=never", "--name", CTR];
    run.extend(&opts);
    run.extend([BASE, "sleep", "600"]);
    p.ok(&run);

    let mut exec = vec!["exec"];
    exec.extend(&root);
    exec.extend([CTR, "sh", "-c", MUTATE]);
    assert_eq!(p.ok(&exec), MUTATE_OUT, "inside the container");

    // While it runs, the mount program serves the rootfs.
    let merged = p.inspect("container", CTR, "{{.GraphDriver.Data.MergedDir}}");
    let upper = PathBuf::from(p.inspect("container", CTR, "{{.GraphDriver.Data.UpperDir}}"));
    assert!(
        upper.starts_with(&p.dir),
        "the store is not the test's: {}",
        upper.display()
    );
    p.daemon_of(&merged);
    let checks = [
        ("etc/passwd", (0, 0)),
        ("data/new", (0, 0)),
        ("data/newdir/f", (5, 6)),
        ("data/owned", (7, 8)),
        ("data/moved/deep", (0, 0)),
    ];
    let paths: Vec<PathBuf> = checks
        .iter()
        .map(|(c, _)| Path::new(&merged).join(c))
        .collect();
    let m = &ids.mount;
    let want: Vec<(u32, u32)> = checks
        .iter()
        .map(|(_, (u, g))| (m(*u, false), m(*g, true)))
        .collect();
    assert_eq!(
        p.owners(&paths),
        want,
        "{checks:?} through the mount, from outside"
    );
    let checks = [
        ("data/new", (0, 0)),
        ("data/newdir/f", (5, 6)),
        ("data/owned", (7, 8)),
        ("data/keep", (0, 0)),
    ];
    let paths: Vec<PathBuf> = checks.iter().map(|(c, _)| upper.join(c)).collect();
    let want: Vec<(u32, u32)> = checks.iter().map(|(_, o)| *o).collect();
    assert_eq!(
        p.owners(&paths),
        want,
        "{checks:?} in the upper {}",
        upper.display()
    );
    assert_eq!(std::fs::read(upper.join("data/new")).unwrap(), b"new\n");
    // The image layer under it is untouched.
    let lower = PathBuf::from(p.inspect("image", BASE, "{{.GraphDriver.Data.UpperDir}}"));
    assert_eq!(std::fs::read(lower.join("data/keep")).unwrap(), b"keep\n");
    assert!(lower.join("data/del").exists() && lower.join("data/sub/deep").exists());
    assert_eq!(p.owners(&[lower.join("data/owned")]), [(1000, 1000)]);
    extra(p, &merged, &upper);

    p.ok(&["stop", "-t", "0", CTR]);

    // diff: /data exactly; nothing deleted elsewhere.
    let diff = p.ok(&["container", "diff", CTR]);
    let lines: BTreeSet<&str> = diff.lines().collect();
    let data: BTreeSet<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.ends_with(" /data") || l.contains(" /data/"))
        .collect();
    let want: BTreeSet<&str> = [
        "C /data",
        "A /data/new",
        "A /data/newdir",
        "A /data/newdir/f",
        "C /data/keep",
        "D /data/del",
        "C /data/owned",
        "D /data/sub",
        "A /data/moved",
        "A /data/moved/deep",
    ]
    .into();
    assert_eq!(data, want, "podman diff under /data:\n{diff}");
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("D ") && !data.contains(l)),
        "podman diff deletes something outside /data:\n{diff}"
    );

    // commit, and run the commit with the mapping and without one.
    p.ok(&["commit", "-q", CTR, "localhost/committed"]);
    let mut again = vec!["run", "--rm", "--pull=never"];
    again.extend(&opts);
    again.extend(["localhost/committed", "sh", "-c", CHECK]);
    assert_eq!(p.ok(&again), CHECK_OUT, "the commit, run with {opts:?}");
    let plain = [
        "run",
        "--rm",
        "--pull=never",
        "localhost/committed",
        "sh",
        "-c",
        CHECK,
    ];
    assert_eq!(p.ok(&plain), CHECK_OUT, "the commit, run without a mapping");

    // The committed layer as podman saves it: container ids, whiteouts for what went.
    let saved = p.path("home/committed.tar");
    p.ok(&[
        "save",
        "-q",
        "-o",
        saved.to_str().unwrap(),
        "localhost/committed",
    ]);
    let layers = saved_layers(&saved);
    assert_eq!(layers.len(), 2, "base and committed layer");
    let top = &layers[1];
    assert_tar_file(top, "data/new", (0, 0), "new\n");
    assert_tar_file(top, "data/newdir/f", (5, 6), "f\n");
    assert_tar_file(top, "data/owned", (7, 8), "owned\n");
    assert_tar_file(top, "data/keep", (0, 0), "keep\nmore\n");
    assert_tar_file(top, "data/moved/deep", (0, 0), "deep\n");
    for wh in ["data/.wh.del", "data/.wh.sub"] {
        assert!(top.contains_key(wh), "{wh} missing: {:?}", top.keys());
    }
    assert!(
        !top.contains_key("bin/busybox"),
        "the committed layer holds unchanged files"
    );

    // export: the whole tree, with the owners the store's namespace sees through the mount:
    // podman 4.3 exports the mounted rootfs without mapping ids back to the container's
    // (the kernel overlay driver gives the same 100000-owned tar for `--uidmap 0:100000:..`).
    let exported = p.path("home/export.tar");
    p.ok(&["export", "-o", exported.to_str().unwrap(), CTR]);
    let tar = tar_entries(std::fs::File::open(&exported).unwrap());
    let o = |u: u32, g: u32| (u64::from(m(u, false)), u64::from(m(g, true)));
    assert_tar_file(&tar, "data/new", o(0, 0), "new\n");
    assert_tar_file(&tar, "data/newdir/f", o(5, 6), "f\n");
    assert_tar_file(&tar, "data/owned", o(7, 8), "owned\n");
    assert_tar_file(&tar, "data/keep", o(0, 0), "keep\nmore\n");
    assert_tar_file(&tar, "data/moved/deep", o(0, 0), "deep\n");
    let bb = file(&tar, "bin/busybox");
    assert_eq!((bb.uid, bb.gid), o(0, 0), "bin/busybox owner in the export");
    assert_eq!(bb.data, std::fs::read(common::busybox()).unwrap());
    for gone in ["data/del", "data/sub", "data/sub/deep"] {
        assert!(!tar.contains_key(gone), "{gone} in the export");
    }
    p.rm(CTR);
    p.no_daemons_left();
}

#[test]
fn rootful_uidmap_run_commit_diff_export() {
    let p = Podman::rootful();
    p.import_base();
    let ids = Ids {
        opts: ["--uidmap", ROOTFUL_MAP, "--gidmap", ROOTFUL_MAP]
            .map(String::from)
            .to_vec(),
        root: vec![],
        mount: Box::new(|id, _| 100000 + id),
    };
    run_commit_diff_export(&p, &ids, |_, _, _| {});
}

/// keep-id: the user is itself inside (uid and gid), its files in the image are its own,
/// /etc is root's; root of the container is the first subordinate id.
#[test]
fn rootless_keep_id_run_commit_diff_export() {
    let p = Podman::rootless();
    let u = p.user.unwrap();
    p.import_base();
    let ids = Ids {
        opts: vec!["--userns=keep-id".into()],
        root: vec!["--user".into(), "0".into()],
        // Container id c is podman-namespace id c+1 below the user's id, 0 (the user) for
        // the user's id, c above it.
        mount: Box::new(move |id, gid| {
            let own = if gid { u.gid } else { u.uid };
            match id {
                i if i < own => i + 1,
                i if i == own => 0,
                i => i,
            }
        }),
    };
    run_commit_diff_export(&p, &ids, |p, merged, upper| {
        // As the user (keep-id's default): its own id, its files, a new file of its own.
        let (uid, gid) = (u.uid, u.gid);
        let out = p.ok(&[
            "exec",
            CTR,
            "sh",
            "-c",
            "id -u; id -g; stat -c '%u:%g %n' /etc/passwd /etc/group /home/me /home/me/mine; \
             echo x > /home/me/made; stat -c '%u:%g %n' /home/me/made; \
             touch /etc/passwd 2>/dev/null || echo denied",
        ]);
        assert_eq!(
            out,
            format!(
                "{uid}\n{gid}\n0:0 /etc/passwd\n0:0 /etc/group\n{uid}:{gid} /home/me\n\
                 {uid}:{gid} /home/me/mine\n{uid}:{gid} /home/me/made\ndenied\n"
            ),
            "the user inside its keep-id container"
        );
        // Through the mount the user's files are the user's own (podman-namespace 0)...
        let m = Path::new(merged);
        assert_eq!(
            p.owners(&[m.join("home/me/made"), m.join("home/me/mine")]),
            [(0, 0), (0, 0)]
        );
        // ... and on disk its container ids: from the host, subuid start + uid - 1.
        assert_eq!(p.owners(&[upper.join("home/me/made")]), [(uid, gid)]);
        assert_eq!(
            owner(&upper.join("home/me/made")),
            (u.ns_to_host(uid, false), u.ns_to_host(gid, true))
        );
        // Container root's copied-up /etc is the user's own on disk (podman-namespace 0).
        assert_eq!(owner(&upper.join("etc")), (u.uid, u.gid));
    });
}

/// `--uidmap 0:1:5000`: container root is the first subordinate id, not the user.
#[test]
fn rootless_uidmap_run_commit_diff_export() {
    let p = Podman::rootless();
    let u = p.user.unwrap();
    p.import_base();
    let ids = Ids {
        opts: ["--uidmap", "0:1:5000", "--gidmap", "0:1:5000"]
            .map(String::from)
            .to_vec(),
        root: vec![],
        mount: Box::new(|id, _| id + 1),
    };
    run_commit_diff_export(&p, &ids, |p, _, upper| {
        // The id map is the container's: 5000 and above do not exist in it.
        let out = p.ok(&[
            "exec",
            CTR,
            "sh",
            "-c",
            "cat /proc/self/uid_map | tr -s ' '; chown 6000 /data/new 2>/dev/null || echo refused",
        ]);
        assert_eq!(out, " 0 1 5000\nrefused\n");
        // Container root's files are the user's own on disk (podman-namespace 0).
        assert_eq!(owner(&upper.join("data/new")), (u.uid, u.gid));
        assert_eq!(
            owner(&upper.join("data/newdir/f")),
            (u.ns_to_host(5, false), u.ns_to_host(6, true))
        );
    });
}
