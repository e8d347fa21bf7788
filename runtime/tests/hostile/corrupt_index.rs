//! Corrupt store index files (layer metadata, the tag table).

use super::*;

/// The id and the layer hex of the image `tag`.
pub(crate) fn image_ids(e: &Env, tag: &str) -> (String, String) {
    let file = image_file(e, tag);
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let id = file.file_stem().unwrap().to_string_lossy().into_owned();
    let layer = cfg["rootfs"]["diff_ids"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    (id, layer)
}

/// Whatever happens to a command while a store file is damaged: it works, or it fails with
/// one line naming `file` and saying what to do; never a panic. Problems are collected.
pub(crate) fn judge(what: &str, cmd: &str, out: &Output, file: &Path, problems: &mut Vec<String>) {
    let err = String::from_utf8_lossy(&out.stderr);
    let shown = file.display().to_string();
    if err.contains("panicked") {
        problems.push(format!("{what}: `strata {cmd}` panicked: {err}"));
    }
    if out.status.success() {
        return;
    }
    let hint = [
        "strata rmi",
        "strata tag",
        "re-import",
        "re-pull",
        "remove",
        "restore",
    ];
    if err.trim().lines().count() != 1
        || !err.contains(&shown)
        || !hint.iter().any(|h| err.contains(h))
    {
        problems.push(format!(
            "{what}: `strata {cmd}` exit {:?} without one line naming {shown} and what to do: {err:?}",
            out.status.code()
        ));
    }
}

/// A snapshot of the store without one file (the damaged one).
pub(crate) fn snapshot_without(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().display().to_string();
    snapshot(root)
        .into_iter()
        .filter(|l| !l.starts_with(&format!("{rel} ")))
        .collect()
}

#[test]
fn corrupt_layer_metadata_spares_images_run_rmi_and_import() {
    let e = Env::new();
    let a = e.busybox_tar("a");
    let b = e.busybox_tar("b");
    let c = e.busybox_tar("c");
    e.ok(&["import", a.to_str().unwrap(), "a:1"]);
    e.ok(&["import", b.to_str().unwrap(), "b:1"]);
    let (_, layer_a) = image_ids(&e, "a:1");
    let (_, layer_b) = image_ids(&e, "b:1");
    let file = e.store().join("layers").join(format!("{layer_a}.json"));
    let good = std::fs::read(&file).unwrap();
    let wrong_id = String::from_utf8(good.clone())
        .unwrap()
        .replace(&layer_a, &layer_b)
        .into_bytes();
    assert_ne!(wrong_id, good);
    let corruptions: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("garbage", b"\x00\xff\x1b[31mgarbage\n".to_vec()),
        ("empty", Vec::new()),
        ("wrong diff_id inside", wrong_id),
    ];
    let mut problems = Vec::new();
    for (what, bytes) in corruptions {
        std::fs::write(&file, &bytes).unwrap();
        let before = snapshot_without(&e.store(), &file);
        let run = |args: &[&str]| (args.join(" "), e.strata(args));
        let checks = vec![
            run(&["images"]),
            run(&["run", "--rm", "b:1", "echo", "still"]),
            run(&["run", "--rm", "a:1", "cat", "/a"]),
            run(&["inspect", "a:1"]),
            run(&["history", "a:1"]),
            run(&["tag", "a:1", "a:2"]),
            run(&["rmi", "a:2"]),
            run(&["import", c.to_str().unwrap(), "c:1"]),
            run(&["rmi", "c:1"]),
        ];
        for (cmd, out) in &checks {
            judge(what, cmd, out, &file, &mut problems);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let expected = match cmd.split(' ').next().unwrap() {
                "images" => stdout.contains("a ") && stdout.contains("b "),
                "run" if cmd.contains("b:1") => stdout == "still\n",
                "run" => stdout == "a",
                _ => true,
            };
            // An unaffected image, and the image whose layer lost its metadata, keep working.
            if !out.status.success() || !expected {
                problems.push(format!(
                    "{what}: `strata {cmd}` exit {:?}, stdout {stdout:?}, stderr {:?}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        // Everything else in the store is as it was (c came and went, its layer too).
        assert_eq!(
            snapshot_without(&e.store(), &file),
            before,
            "{what}: the store changed"
        );
        std::fs::write(&file, &good).unwrap();
    }
    // Importing the layer again mends its metadata.
    std::fs::write(&file, b"garbage").unwrap();
    e.ok(&["import", a.to_str().unwrap(), "a:1"]);
    let mended: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap())
        .unwrap_or_else(|err| panic!("not mended by a re-import: {err}"));
    assert_eq!(mended["diff_id"], format!("sha256:{layer_a}"));
    assert!(
        problems.is_empty(),
        "a corrupt layers/HEX.json breaks commands:\n{}",
        problems.join("\n")
    );
}

#[test]
fn corrupt_tag_table_names_the_file_and_spares_the_rest() {
    let e = Env::new();
    let a = e.busybox_tar("a");
    let b = e.busybox_tar("b");
    let c = e.busybox_tar("c");
    e.ok(&["import", a.to_str().unwrap(), "a:1"]);
    e.ok(&["import", b.to_str().unwrap(), "b:1"]);
    let (id_a, _) = image_ids(&e, "a:1");
    let (id_b, _) = image_ids(&e, "b:1");
    let file = e.store().join("images/repositories.json");
    let good = std::fs::read(&file).unwrap();
    let archive = e.input("load.tar", &docker_archive(&good_tar(), &good_tar()));
    let corruptions: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("garbage", b"\x00\xff\x1b[31mgarbage\n".to_vec()),
        ("empty", Vec::new()),
        ("not a table", b"[\"a:1\"]".to_vec()),
    ];
    let mut problems = Vec::new();
    for (what, bytes) in corruptions {
        std::fs::write(&file, &bytes).unwrap();
        let before = snapshot(&e.store());
        let run = |args: &[&str]| (args.join(" "), e.strata(args));
        let checks = vec![
            run(&["images"]),
            run(&["run", "--rm", &id_b[..12], "echo", "still"]),
            run(&["inspect", &id_a[..12]]),
            run(&["run", "--rm", "b:1", "echo", "still"]),
            run(&["tag", &id_a[..12], "a:2"]),
            run(&["rmi", "b:1"]),
            run(&["rmi", &id_a[..12]]),
            run(&["import", c.to_str().unwrap(), "c:1"]),
            run(&["load", "-i", archive.to_str().unwrap()]),
        ];
        for (cmd, out) in &checks {
            judge(what, cmd, out, &file, &mut problems);
            let err = String::from_utf8_lossy(&out.stderr);
            // rmi needs the table too: advising it would send the user in a circle.
            if !out.status.success() && err.contains("rmi -f") {
                problems.push(format!("{what}: `strata {cmd}` advises rmi: {err}"));
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            // Without tags the images are still there, by id.
            let must_work = match cmd.split(' ').next().unwrap() {
                "images" => Some(stdout.contains(&id_a[..12]) && stdout.contains(&id_b[..12])),
                "run" if cmd.contains(&id_b[..12]) => Some(stdout == "still\n"),
                "inspect" => Some(stdout.contains(&id_a)),
                _ => None,
            };
            if must_work == Some(false) || (must_work.is_some() && !out.status.success()) {
                problems.push(format!(
                    "{what}: `strata {cmd}` exit {:?}, stdout {stdout:?}, stderr {:?}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        // Nothing was written over the damaged table or beside it: a refused import leaves
        // no untagged image or layer behind.
        let after = snapshot(&e.store());
        if after != before {
            problems.push(format!(
                "{what}: the store changed: {:?}",
                after
                    .iter()
                    .filter(|l| !before.contains(l))
                    .collect::<Vec<_>>()
            ));
        }
        std::fs::write(&file, &good).unwrap();
    }
    // The advice works: without the table, the images are named again by id.
    std::fs::write(&file, b"garbage").unwrap();
    std::fs::remove_file(&file).unwrap();
    e.ok(&["tag", &id_b[..12], "b:1"]);
    assert_eq!(e.ok(&["run", "--rm", "b:1", "echo", "back"]), "back\n");
    assert!(
        problems.is_empty(),
        "a corrupt images/repositories.json breaks commands:\n{}",
        problems.join("\n")
    );
}
