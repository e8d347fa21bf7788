//! Hostile archives leave the store unchanged.

use super::*;

pub(crate) fn tar_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; write the raw name for hostile entries.
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub(crate) fn sha(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn config_for(diff_ids: &[String]) -> Vec<u8> {
    let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"sha256:{d}\"")).collect();
    format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        ids.join(",")
    )
    .into_bytes()
}

/// A docker-archive (Docker ≥25 layout) holding `files` and a manifest.json.
pub(crate) fn docker_archive(path: &Path, manifest: &str, files: &[(String, Vec<u8>)]) {
    let mut entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    entries.push(("manifest.json", manifest.as_bytes()));
    std::fs::write(path, tar_bytes(&entries)).unwrap();
}

/// name, manifest.json, archive members, what the error must say.
pub(crate) type Case = (&'static str, String, Vec<(String, Vec<u8>)>, &'static str);

#[test]
fn hostile_archives_leave_the_store_unchanged() {
    let e = Env::new();
    // A store with one good image in it.
    let good_layer = tar_bytes(&[("etc/good", b"good\n")]);
    let good_hex = sha(&good_layer);
    let good_cfg = config_for(std::slice::from_ref(&good_hex));
    let good_cfg_hex = sha(&good_cfg);
    let good = e.path("good.tar");
    docker_archive(
        &good,
        &format!(
            r#"[{{"Config":"blobs/sha256/{good_cfg_hex}","RepoTags":["good:1"],"Layers":["blobs/sha256/{good_hex}"]}}]"#
        ),
        &[
            (format!("blobs/sha256/{good_cfg_hex}"), good_cfg.clone()),
            (format!("blobs/sha256/{good_hex}"), good_layer.clone()),
        ],
    );
    let out = e.ok("s", &["load", "-i", good.to_str().unwrap()]);
    assert!(out.contains("good:1"), "{out}");
    let before = e.listing("s");

    let new_layer = tar_bytes(&[("etc/new", b"new\n")]);
    let new_hex = sha(&new_layer);
    let cases: Vec<Case> = vec![
        {
            // The manifest names a layer blob that is not in the archive.
            let cfg = config_for(&[good_hex.clone(), new_hex.clone()]);
            let ch = sha(&cfg);
            (
                "missing blob",
                format!(
                    r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["bad:1"],"Layers":["blobs/sha256/{good_hex}","blobs/sha256/{new_hex}"]}}]"#
                ),
                vec![
                    (format!("blobs/sha256/{ch}"), cfg),
                    (format!("blobs/sha256/{good_hex}"), good_layer.clone()),
                ],
                "missing from the archive",
            )
        },
        {
            // A layer whose content is not what its name and the config say.
            let cfg = config_for(&[good_hex.clone(), new_hex.clone()]);
            let ch = sha(&cfg);
            let tampered = tar_bytes(&[("etc/new", b"evil\n")]);
            (
                "wrong digest",
                format!(
                    r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["bad:1"],"Layers":["blobs/sha256/{good_hex}","blobs/sha256/{new_hex}"]}}]"#
                ),
                vec![
                    (format!("blobs/sha256/{ch}"), cfg),
                    (format!("blobs/sha256/{good_hex}"), good_layer.clone()),
                    (format!("blobs/sha256/{new_hex}"), tampered),
                ],
                "digest",
            )
        },
        {
            // A config whose bytes do not hash to its name.
            let cfg = config_for(std::slice::from_ref(&good_hex));
            let ch = sha(b"something else");
            (
                "wrong config digest",
                format!(
                    r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["bad:1"],"Layers":["blobs/sha256/{good_hex}"]}}]"#
                ),
                vec![
                    (format!("blobs/sha256/{ch}"), cfg),
                    (format!("blobs/sha256/{good_hex}"), good_layer.clone()),
                ],
                "digest",
            )
        },
        {
            // A layer that writes outside its root.
            let evil = tar_bytes(&[("etc/ok", b"ok\n"), ("../../escape", b"x\n")]);
            let eh = sha(&evil);
            let cfg = config_for(std::slice::from_ref(&eh));
            let ch = sha(&cfg);
            (
                "../ paths",
                format!(
                    r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["bad:1"],"Layers":["blobs/sha256/{eh}"]}}]"#
                ),
                vec![
                    (format!("blobs/sha256/{ch}"), cfg),
                    (format!("blobs/sha256/{eh}"), evil),
                ],
                "escapes the root",
            )
        },
        {
            // A config whose diff_ids try to name a path.
            let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:../../../etc"]}}"#.to_vec();
            let ch = sha(&cfg);
            (
                "diff_id path",
                format!(
                    r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["bad:1"],"Layers":["blobs/sha256/{good_hex}"]}}]"#
                ),
                vec![
                    (format!("blobs/sha256/{ch}"), cfg),
                    (format!("blobs/sha256/{good_hex}"), good_layer.clone()),
                ],
                "malformed digest",
            )
        },
        {
            // manifest.json pointing outside the archive.
            (
                "manifest path escape",
                r#"[{"Config":"../../etc/passwd","RepoTags":["bad:1"],"Layers":[]}]"#.to_string(),
                vec![],
                "leaves the archive",
            )
        },
    ];
    for (name, manifest, files, expect) in cases {
        let p = e.path(&format!("{}.tar", name.replace(' ', "-")));
        docker_archive(&p, &manifest, &files);
        let err = e.fails("s", &["load", "-i", p.to_str().unwrap()]);
        assert!(err.contains(expect), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: one line: {err}");
        assert_eq!(e.listing("s"), before, "{name}: the store changed");
    }

    // OCI layouts: an index nesting itself deeper and deeper (a manifest loop), and a
    // manifest whose layer blob is missing.
    let layout = e.path("loop");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut child = format!("sha256:{}", "1".repeat(64));
    let mut size = 2;
    for _ in 0..8 {
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{child}","size":{size}}}]}}"#
        );
        let h = sha(idx.as_bytes());
        std::fs::write(layout.join("blobs/sha256").join(&h), &idx).unwrap();
        child = format!("sha256:{h}");
        size = idx.len();
    }
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{child}","size":{size}}}]}}"#
        ),
    )
    .unwrap();
    let err = e.fails("s", &["load", "-i", layout.to_str().unwrap()]);
    assert!(err.contains("manifest loop"), "{err}");
    assert_eq!(e.listing("s"), before);

    let layout = e.path("missing");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let cfg = config_for(std::slice::from_ref(&new_hex));
    let ch = sha(&cfg);
    std::fs::write(layout.join("blobs/sha256").join(&ch), &cfg).unwrap();
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{ch}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{new_hex}","size":{}}}]}}"#,
        cfg.len(),
        new_layer.len()
    );
    let mh = sha(m.as_bytes());
    std::fs::write(layout.join("blobs/sha256").join(&mh), &m).unwrap();
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{mh}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"bad:1"}}}}]}}"#,
            m.len()
        ),
    )
    .unwrap();
    let err = e.fails("s", &["load", "-i", layout.to_str().unwrap()]);
    assert!(err.contains("missing"), "{err}");
    assert_eq!(e.listing("s"), before);
    // The good image still runs its course: saved and loaded elsewhere, same id.
    let back = e.path("back.tar");
    e.ok("s", &["save", "-o", back.to_str().unwrap(), "good:1"]);
    let out = e.ok("s2", &["load", "-i", back.to_str().unwrap()]);
    assert!(out.contains(&good_cfg_hex), "{out}");
    let _ = std::io::stdout().flush();
}
