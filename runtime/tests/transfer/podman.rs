//! Archives and OCI layouts exchanged with podman and skopeo.

use super::*;

#[test]
fn podman_archives_load_and_run() {
    let e = Env::new();
    e.podman_images(false);
    let id = e.podman_id("localhost/app:1");
    let d = e.path("app-docker.tar");
    let o = e.path("app-oci.tar");
    e.podman_ok(&["save", "-q", "-o", d.to_str().unwrap(), "localhost/app:1"]);
    e.podman_ok(&[
        "save",
        "-q",
        "--format",
        "oci-archive",
        "-o",
        o.to_str().unwrap(),
        "localhost/app:1",
    ]);
    // docker-archive into one store, OCI archive into another: same image id as podman's.
    let out = e.ok("s1", &["load", "-i", d.to_str().unwrap()]);
    assert!(out.contains("localhost/app:1"), "{out}");
    assert!(
        out.contains(&id),
        "image id differs from podman's {id}: {out}"
    );
    let out = e.ok("s2", &["load", "-i", o.to_str().unwrap()]);
    assert!(out.contains(&id), "{out}");
    for s in ["s1", "s2"] {
        assert_eq!(
            e.ok(s, &["run", "--rm", "localhost/app:1", "echo", "ok"]),
            "ok\n"
        );
        assert_eq!(
            e.ok(
                s,
                &["run", "--rm", "localhost/app:1", "cat", "/hello", "/two"]
            ),
            "hello from a layer\nsecond layer\n"
        );
        assert_eq!(layer_count(&e, s), 3);
    }
    // The other format into the same store: layers are not stored twice.
    e.ok("s1", &["load", "-i", o.to_str().unwrap()]);
    assert_eq!(layer_count(&e, "s1"), 3);
    // From stdin, compressed as a whole.
    let gz = e.path("app.tar.gz");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {}", d.display(), gz.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new(strata_bin())
        .arg("--root")
        .arg(e.path("s3"))
        .args(["load", "-q"])
        .stdin(std::fs::File::open(&gz).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        check(&out, "load from stdin").trim(),
        format!("sha256:{id}")
    );
}

#[test]
fn save_formats_read_by_podman_and_skopeo() {
    let e = Env::new();
    e.podman_images(false);
    let id = e.podman_id("localhost/app:1");
    let d = e.path("app-docker.tar");
    e.podman_ok(&["save", "-q", "-o", d.to_str().unwrap(), "localhost/app:1"]);
    e.ok("s", &["load", "-i", d.to_str().unwrap()]);
    let diff_ids = e.ok("s", &["inspect", "localhost/app:1"]);
    let da = e.path("out-docker.tar");
    let oa = e.path("out-oci.tar");
    let od = e.path("out-oci-dir");
    e.ok(
        "s",
        &["save", "-o", da.to_str().unwrap(), "localhost/app:1"],
    );
    e.ok(
        "s",
        &[
            "save",
            "--format",
            "oci-archive",
            "-o",
            oa.to_str().unwrap(),
            "localhost/app:1",
        ],
    );
    e.ok(
        "s",
        &[
            "save",
            "--format",
            "oci-dir",
            "-o",
            od.to_str().unwrap(),
            "localhost/app:1",
        ],
    );
    // Byte-stable: saving again gives the same archive.
    let again = e.path("again.tar");
    e.ok(
        "s",
        &["save", "-o", again.to_str().unwrap(), "localhost/app:1"],
    );
    assert_eq!(sha256_file(&da), sha256_file(&again));
    // skopeo reads all three, and sees the store's layers (diff_ids) unchanged.
    for src in [
        format!("docker-archive:{}", da.display()),
        format!("oci-archive:{}", oa.display()),
        format!("oci:{}", od.display()),
    ] {
        let out = check(
            &Command::new("skopeo")
                .args(["inspect", "--config", &src])
                .output()
                .unwrap(),
            &format!("skopeo inspect {src}"),
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        for d in v["rootfs"]["diff_ids"].as_array().unwrap() {
            assert!(diff_ids.contains(d.as_str().unwrap()), "{src}: {out}");
        }
        // And copies it whole (every blob verified by skopeo).
        let dest = e.path(&format!("copy-{}", COUNTER.fetch_add(1, Ordering::SeqCst)));
        check(
            &Command::new("skopeo")
                .args(["copy", "-q", &src, &format!("oci:{}:x", dest.display())])
                .output()
                .unwrap(),
            &format!("skopeo copy {src}"),
        );
    }
    // podman loads what strata wrote, with the same id, and runs it.
    for a in [&da, &oa] {
        e.podman_ok(&["rmi", "-a", "-f"]);
        let out = e.podman_ok(&["load", "-i", a.to_str().unwrap()]);
        assert!(out.contains("localhost/app:1"), "{out}");
        assert_eq!(
            e.podman_id("localhost/app:1"),
            id.trim_start_matches("sha256:")
        );
    }
    assert_eq!(
        e.podman_run("localhost/app:1", &["cat", "/two"]),
        "second layer\n"
    );
}

#[test]
fn skopeo_oci_layouts_with_gzip_and_zstd_layers() {
    need("zstd");
    let e = Env::new();
    e.podman_images(false);
    let d = e.path("app-docker.tar");
    e.podman_ok(&["save", "-q", "-o", d.to_str().unwrap(), "localhost/app:1"]);
    for fmt in ["gzip", "zstd"] {
        let layout = e.path(&format!("layout-{fmt}"));
        check(
            &Command::new("skopeo")
                .args([
                    "copy",
                    "-q",
                    "--dest-compress",
                    "--dest-compress-format",
                    fmt,
                    &format!("docker-archive:{}", d.display()),
                    &format!("oci:{}:localhost/app:{fmt}", layout.display()),
                ])
                .output()
                .unwrap(),
            "skopeo copy",
        );
        // The layout really holds compressed layers of that kind.
        let blobs = std::fs::read_dir(layout.join("blobs/sha256")).unwrap();
        let mut manifests = String::new();
        for b in blobs.flatten() {
            let bytes = std::fs::read(b.path()).unwrap();
            if bytes.first() == Some(&b'{') {
                manifests.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
        assert!(manifests.contains(&format!("tar+{fmt}")), "{manifests}");
        // As a directory, into one store.
        let store = format!("s-{fmt}");
        let out = e.ok(&store, &["load", "-i", layout.to_str().unwrap()]);
        assert!(out.contains(&format!("localhost/app:{fmt}")), "{out}");
        assert_eq!(
            e.ok(
                &store,
                &[
                    "run",
                    "--rm",
                    &format!("localhost/app:{fmt}"),
                    "cat",
                    "/two"
                ]
            ),
            "second layer\n"
        );
        // As a tar of the layout (an oci-archive), into another.
        let tar = e.path(&format!("layout-{fmt}.tar"));
        common::tar_dir(&layout, &tar);
        let store2 = format!("t-{fmt}");
        e.ok(&store2, &["load", "-i", tar.to_str().unwrap()]);
        assert_eq!(
            e.ok(
                &store2,
                &["run", "--rm", &format!("localhost/app:{fmt}"), "echo", "ok"]
            ),
            "ok\n"
        );
    }
}
