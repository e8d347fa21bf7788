//! Corrupt image and container metadata: the file is named, the rest spared.

use super::*;

pub(crate) fn image_file(e: &Env, tag: &str) -> PathBuf {
    let repos: serde_json::Value =
        serde_json::from_slice(&std::fs::read(e.store().join("images/repositories.json")).unwrap())
            .unwrap();
    let id = repos[tag].as_str().unwrap().to_string();
    e.store()
        .join("images")
        .join(format!("{}.json", id.trim_start_matches("sha256:")))
}

pub(crate) fn container_dir(e: &Env, name: &str) -> PathBuf {
    for x in std::fs::read_dir(e.store().join("containers"))
        .unwrap()
        .flatten()
    {
        let cfg = std::fs::read_to_string(x.path().join("config.json")).unwrap_or_default();
        if cfg.contains(&format!("\"{name}\"")) {
            return x.path();
        }
    }
    panic!("no container {name}");
}

#[test]
fn corrupt_metadata_names_the_file_and_spares_the_rest() {
    let e = Env::new();
    let a = e.busybox_tar("a");
    let b = e.busybox_tar("b");
    e.ok(&["import", a.to_str().unwrap(), "a:1"]);
    e.ok(&["import", b.to_str().unwrap(), "b:1"]);
    e.ok(&["run", "--name", "ca", "a:1", "echo", "a"]);
    e.ok(&["run", "--name", "cb", "b:1", "echo", "b"]);
    let img_a = image_file(&e, "a:1");
    let state_ca = container_dir(&e, "ca").join("state.json");
    let config_ca = container_dir(&e, "ca").join("config.json");

    let corruptions: Vec<(&str, PathBuf, Vec<u8>)> = vec![
        ("truncated image config", img_a.clone(), {
            let v = std::fs::read(&img_a).unwrap();
            v[..v.len() / 2].to_vec()
        }),
        (
            "garbage container state",
            state_ca.clone(),
            b"\x00\xffgarbage".to_vec(),
        ),
        ("empty container config", config_ca.clone(), Vec::new()),
    ];
    let mut problems = Vec::new();
    for (what, file, bytes) in corruptions {
        let saved = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes).unwrap();
        let shown = file.display().to_string();
        // The other image and container keep working, and the damaged file is named.
        let checks: Vec<(&str, Output)> = vec![
            ("images", e.strata(&["images"])),
            ("ps -a", e.strata(&["ps", "-a"])),
            (
                "run b:1",
                e.strata(&["run", "--rm", "b:1", "echo", "still"]),
            ),
            ("inspect a:1", e.strata(&["inspect", "a:1"])),
            ("inspect ca", e.strata(&["inspect", "ca"])),
        ];
        for (cmd, out) in &checks {
            let err = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(!err.contains("panicked"), "{what}: {cmd}: {err}");
            let bad = match *cmd {
                "images" => !out.status.success() || !stdout.contains("b "),
                "ps -a" => !out.status.success() || !stdout.contains("cb"),
                "run b:1" => !out.status.success() || stdout != "still\n",
                // About the damaged item itself: an error naming the file, one line.
                _ => {
                    !out.status.success()
                        && (!err.contains(&shown) || err.trim().lines().count() != 1)
                }
            };
            if bad {
                problems.push(format!(
                    "{what}: `strata {cmd}` exit {:?}, stdout {stdout:?}, stderr {err:?}",
                    out.status.code()
                ));
            }
            let hint = ["strata rm", "strata rmi", "fsck", "remove", "restore"];
            if !out.status.success() && !hint.iter().any(|h| err.contains(h)) {
                problems.push(format!(
                    "{what}: `strata {cmd}` does not say what to do: {err}"
                ));
            }
            if !out.status.success() && !err.contains(&shown) && !err.is_empty() {
                problems.push(format!(
                    "{what}: `strata {cmd}` error does not name {shown}: {err}"
                ));
            }
        }
        std::fs::write(&file, saved).unwrap();
    }
    // The store is whole again.
    assert_eq!(e.ok(&["run", "--rm", "a:1", "echo", "back"]), "back\n");
    assert!(
        problems.is_empty(),
        "corrupt metadata breaks unrelated commands:\n{}",
        problems.join("\n")
    );
}
