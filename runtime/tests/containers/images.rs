//! Images and changes: tag/history/rmi, hostile tars, diff/commit/export, save into a fifo, fsck by name.

use super::*;

#[test]
fn images_tag_history_inspect_rmi() {
    let e = Env::new();
    e.ok(&["tag", "busybox", "bb:v2"]);
    let images = e.ok(&["images"]);
    assert!(
        images.contains("busybox") && images.contains("v2"),
        "{images}"
    );
    assert!(e.ok(&["history", "bb:v2"]).contains("strata import"));
    let inspect: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "busybox"])).unwrap();
    assert_eq!(inspect[0]["Config"]["Cmd"][0], "/bin/sh");
    assert_eq!(e.ok(&["rmi", "bb:v2"]).trim(), "Untagged: bb:v2");
    assert!(e.ok(&["rmi", "busybox"]).contains("Deleted: sha256:"));
    assert_eq!(
        std::fs::read_dir(e.root().join("layers")).unwrap().count(),
        0,
        "layers must be collected"
    );
    let out = e.strata(&["run", "--rm", "busybox", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such image"));
}

/// A tar holding raw (unvalidated) entries, as an attacker would write it.
pub(crate) fn hostile_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, link) in entries {
        let mut h = tar::Header::new_old();
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        if !link.is_empty() {
            let l = &mut h.as_old_mut().linkname;
            l[..link.len()].copy_from_slice(link.as_bytes());
        }
        let data: &[u8] = if *kind == tar::EntryType::Regular {
            b"pwned\n"
        } else {
            b""
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

pub(crate) fn store_snapshot(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in ["layers", "images", "tmp"] {
        if let Ok(rd) = std::fs::read_dir(root.join(d)) {
            for e in rd.flatten() {
                out.push(format!("{d}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn hostile_tars_are_refused_and_the_store_is_unchanged() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let e = Env::new();
    let victim = e.dir.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            hostile_tar(&[("../../../../escape", Regular, "")]),
        ),
        ("absolute", hostile_tar(&[("/tmp/escape-abs", Regular, "")])),
        (
            "symlink-write-through",
            hostile_tar(&[
                ("d", Directory, ""),
                ("d/l", Symlink, victim.to_str().unwrap()),
                ("d/l/file", Regular, ""),
            ]),
        ),
        (
            "hardlink-outside",
            hostile_tar(&[("h", Link, "../../../etc/passwd")]),
        ),
        (
            "hardlink-absolute",
            hostile_tar(&[("h", Link, "/etc/passwd")]),
        ),
    ];
    let before = store_snapshot(&e.root());
    for (what, data) in cases {
        let p = e.dir.join(format!("{what}.tar"));
        std::fs::write(&p, data).unwrap();
        let out = e.strata(&["import", p.to_str().unwrap(), "evil"]);
        assert!(!out.status.success(), "{what}: hostile tar imported");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refusing"), "{what}: {err}");
        assert_eq!(
            store_snapshot(&e.root()),
            before,
            "{what}: the store changed"
        );
    }
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    assert!(!Path::new("/tmp/escape-abs").exists());
    assert!(!e.ok(&["images"]).contains("evil"));
}

/// Names and contents of the regular files in a tar.
pub(crate) fn tar_files(data: &[u8]) -> std::collections::BTreeMap<String, String> {
    use std::io::Read;
    let mut out = std::collections::BTreeMap::new();
    let mut a = tar::Archive::new(data);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut body = String::new();
        if e.header().entry_type() == tar::EntryType::Regular {
            e.read_to_string(&mut body).unwrap_or_default();
        }
        out.insert(name.trim_end_matches('/').to_string(), body);
    }
    out
}

pub(crate) const CHANGES: &str = "echo new > /tmp/new; echo changed >> /etc/keep; rm /etc/group; \
                       chmod 600 /etc/motd; mv /home /home2";

#[test]
fn diff_commit_export_round_trip_on_both_drivers() {
    let e = Env::new();
    for driver in ["overlay", "fuse"] {
        let name = format!("c-{driver}");
        let (code, _, err) = {
            let out = e.strata(&[
                "run", "--name", &name, "--driver", driver, "busybox", "sh", "-c", CHANGES,
            ]);
            (
                out.status.code(),
                String::new(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        assert_eq!(code, Some(0), "{driver}: {err}");
        let diff = e.ok(&["diff", &name]);
        assert_eq!(
            diff,
            "C /etc\nD /etc/group\nC /etc/keep\nC /etc/motd\nD /home\nA /home2\nA /home2/bob\n\
             A /home2/bob/.profile\nC /tmp\nA /tmp/new\n",
            "{driver}"
        );
        let img = format!("img-{driver}:v1");
        let id = e.ok(&[
            "commit",
            "-m",
            "round trip",
            "-c",
            r#"CMD ["/bin/cat", "/tmp/new"]"#,
            &name,
            &img,
        ]);
        assert!(id.starts_with("sha256:"), "{id}");
        assert!(e.ok(&["history", &img]).contains("round trip"));
        let inspect: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", &img])).unwrap();
        assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);
        // The image's CMD came from -c; the changes are all there, on either driver.
        for run_driver in ["overlay", "fuse"] {
            assert_eq!(
                e.run(&["--driver", run_driver, &img]),
                (0, "new\n".into(), String::new())
            );
            let (code, out, err) = e.run(&[
                "--driver",
                run_driver,
                &img,
                "sh",
                "-c",
                "cat /etc/keep /etc/motd /home2/bob/.profile; stat -c %a /etc/motd; \
                 ls /etc/group /home 2>&1 | wc -l; ls -A /home2/bob",
            ]);
            assert_eq!(code, 0, "{err}");
            assert_eq!(
                out, "original\nchanged\nmotd text\nexport X=1\n600\n2\n.profile\n",
                "committed on {driver}, run on {run_driver}"
            );
        }
        // export: the merged tree, with the container stopped (a read-only mount).
        let tar = e.dir.join(format!("{driver}.tar"));
        e.ok(&["export", "-o", tar.to_str().unwrap(), &name]);
        let files = tar_files(&std::fs::read(&tar).unwrap());
        assert_eq!(files["etc/keep"], "original\nchanged\n");
        assert_eq!(files["etc/motd"], "motd text\n");
        assert_eq!(files["home2/bob/.profile"], "export X=1\n");
        assert!(files.contains_key("bin/busybox"));
        assert!(!files.contains_key("etc/group") && !files.contains_key("home"));
        assert!(!files.keys().any(|k| k.contains(".wh.")), "{files:?}");
        // To stdout too, identical.
        let out = e.strata(&["export", &name]);
        assert!(out.status.success());
        assert_eq!(tar_files(&out.stdout), files);
    }
    // No mounts are left behind by the read-only views.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(e.root().to_str().unwrap()), "{mounts}");
}

#[test]
fn commit_and_export_a_running_container_and_an_unchanged_one() {
    let e = Env::new();
    let id = e.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "--driver",
        "fuse",
        "busybox",
        "sh",
        "-c",
        "chmod 640 /etc/motd; echo up > /tmp/ready; exec sleep 1000",
    ]);
    poll("the container", || {
        e.ok(&["diff", "live"]).contains("/tmp/ready")
    });
    e.ok(&["commit", "live", "snap"]);
    let (code, out, err) = e.run(&[
        "snap",
        "sh",
        "-c",
        "cat /tmp/ready /etc/motd; stat -c %a /etc/motd",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "up\nmotd text\n640\n");
    let out = e.strata(&["export", "live"]);
    assert!(out.status.success());
    assert_eq!(tar_files(&out.stdout)["tmp/ready"], "up\n");
    e.ok(&["rm", "-f", id.trim()]);
    // A container that changed nothing commits to an empty layer, as docker does.
    e.ok(&["run", "--name", "idle", "busybox", "true"]);
    assert_eq!(e.ok(&["diff", "idle"]), "");
    e.ok(&["commit", "idle", "same"]);
    assert_eq!(e.run(&["same", "cat", "/etc/keep"]).1, "original\n");
    let out = e.strata(&["commit", "idle", "Bad:Name"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid"));
}

/// `-o` naming a device or a pipe writes into it: renaming a finished file over it (how
/// regular files are written) turned `strata export -o /dev/null` into a regular /dev/null.
/// A fifo stands in for the device here, so a regression cannot break the host.
#[test]
fn export_and_save_write_into_a_fifo_in_place() {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    let e = Env::new();
    e.ok(&["run", "--name", "c", "busybox", "true"]);
    let fifo = e.dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for args in [
        ["export", "-o", fifo.to_str().unwrap(), "c"],
        ["save", "-o", fifo.to_str().unwrap(), "busybox"],
    ] {
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let mut data = Vec::new();
                std::fs::File::open(&fifo)
                    .unwrap()
                    .read_to_end(&mut data)
                    .unwrap();
                data
            })
        };
        e.ok(&args);
        // Before joining: a replaced fifo would leave the reader waiting for a writer.
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "{args:?} replaced the fifo: {kind:?}");
        let data = reader.join().unwrap();
        assert!(
            !tar_files(&data).is_empty(),
            "{args:?} wrote no tar into the fifo"
        );
    }
    let left: Vec<_> = std::fs::read_dir(&e.dir)
        .unwrap()
        .flatten()
        .map(|d| d.file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn fsck_by_container_name() {
    let e = Env::new();
    let id = e.ok(&[
        "run", "-d", "--name", "fk", "--driver", "fuse", "busybox", "sleep", "1000",
    ]);
    let id = id.trim();
    let upper = e.root().join("containers").join(id).join("upper");
    // Read-only checks are fine while it runs; the report names the container's upper.
    let out = e.ok(&["fsck", "fk"]);
    assert_eq!(out, format!("{}: clean (0 repaired)\n", upper.display()));
    let out = e.strata(&["fsck", "--repair", "fk"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "repair of a running container");
    assert!(
        err.contains("is running") && err.contains("strata stop fk"),
        "{err}"
    );
    let out = e.strata(&["fsck", "fk", "--lowerdir", "/tmp"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("names a container"));
    let out = e.strata(&["fsck", "no-such-box"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such container"));
    e.ok(&["stop", "-t", "1", "fk"]);
    assert_eq!(
        e.ok(&["fsck", "--repair", id]),
        format!("{}: clean (0 repaired)\n", upper.display())
    );
    e.ok(&["rm", "fk"]);
}
