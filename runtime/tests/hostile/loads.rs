//! Hostile `strata load` archives are refused and change nothing.

use super::*;

pub(crate) fn config_for(diff_ids: &[String]) -> Vec<u8> {
    let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"sha256:{d}\"")).collect();
    format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        ids.join(",")
    )
    .into_bytes()
}

/// A docker-archive holding one image made of `layer` (its bytes as stored in the archive:
/// plain or compressed; `diff` the uncompressed tar).
pub(crate) fn docker_archive(layer: &[u8], diff: &[u8]) -> Vec<u8> {
    let dh = sha(diff);
    let lh = sha(layer);
    let cfg = config_for(std::slice::from_ref(&dh));
    let ch = sha(&cfg);
    let manifest = format!(
        r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["bad:1"],"Layers":["blobs/sha256/{lh}"]}}]"#
    );
    tar_of(&[
        f(&format!("blobs/sha256/{ch}"), &cfg),
        f(&format!("blobs/sha256/{lh}"), layer),
        f("manifest.json", manifest.as_bytes()),
    ])
}

#[test]
fn hostile_loads_are_refused_and_change_nothing() {
    let e = Env::new();
    let good_layer = good_tar();
    let good = e.input("good.tar", &docker_archive(&good_layer, &good_layer));
    // Its tag is bad:1 too: a refused load must not retag it.
    e.ok(&["load", "-i", good.to_str().unwrap()]);
    let store = e.store();
    let canary = e.canary();
    let before = snapshot(&store);
    let canary_before = snapshot(&canary);
    let up = "../".repeat(12);
    let layer_cases: Vec<(&str, Vec<u8>)> = vec![
        ("layer with ..", tar_of(&[f(&format!("{up}escape"), b"x")])),
        (
            "layer with an absolute name",
            tar_of(&[f(&format!("{}/x", abs(&canary)), b"x")]),
        ),
        (
            "layer writing through a symlink",
            tar_of(&[sym("a", &abs(&canary)), f("a/secret", b"pwned")]),
        ),
        (
            "layer hard-linking out",
            tar_of(&[hard("h", &abs(&canary.join("secret")))]),
        ),
    ];
    let mut cases: Vec<(String, Vec<u8>, &str)> = Vec::new();
    for (name, layer) in layer_cases {
        cases.push((
            name.to_string(),
            docker_archive(&layer, &layer),
            "refusing the tar",
        ));
        let g = gzip(&layer);
        cases.push((
            format!("{name} (gzip)"),
            docker_archive(&g, &layer),
            "refusing the tar",
        ));
    }
    let big = tar_of(&[f("big", &vec![3u8; 1 << 20])]);
    let g = gzip(&big);
    cases.push((
        "truncated gzip layer".into(),
        docker_archive(&g[..g.len() / 2], &big),
        "",
    ));
    let z = zstd(&big);
    cases.push((
        "truncated zstd layer".into(),
        docker_archive(&z[..z.len() / 2], &big),
        "",
    ));
    // The archive names the layer by the digest of the complete blob.
    let full = docker_archive(&g, &big);
    cases.push((
        "truncated archive".into(),
        full[..full.len() / 3].to_vec(),
        "",
    ));
    let gz_archive = gzip(&docker_archive(&good_layer, &good_layer));
    cases.push((
        "truncated gzip archive".into(),
        gz_archive[..gz_archive.len() / 2].to_vec(),
        "",
    ));
    let zst_archive = zstd(&docker_archive(&good_layer, &good_layer));
    cases.push((
        "truncated zstd archive".into(),
        zst_archive[..zst_archive.len() / 2].to_vec(),
        "",
    ));
    cases.push((
        "manifest not JSON".into(),
        tar_of(&[f("manifest.json", b"[{\"Config\": ")]),
        "manifest.json",
    ));
    {
        let cfg = b"{not json".to_vec();
        let ch = sha(&cfg);
        let lh = sha(&good_layer);
        let manifest = format!(
            r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["bad:1"],"Layers":["blobs/sha256/{lh}"]}}]"#
        );
        cases.push((
            "config not JSON".into(),
            tar_of(&[
                f(&format!("blobs/sha256/{ch}"), &cfg),
                f(&format!("blobs/sha256/{lh}"), &good_layer),
                f("manifest.json", manifest.as_bytes()),
            ]),
            "",
        ));
    }
    {
        // An OCI archive (tar) whose layer blob is not what its digest says.
        let gl = gzip(&big);
        let cfg = config_for(&[sha(&big)]);
        let ch = sha(&cfg);
        let wrong = sha(b"not this");
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{ch}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{wrong}","size":{}}}]}}"#,
            cfg.len(),
            gl.len()
        );
        let mh = sha(m.as_bytes());
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{mh}","size":{}}}]}}"#,
            m.len()
        );
        cases.push((
            "OCI archive blob with a bad digest".into(),
            tar_of(&[
                f("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
                f("index.json", index.as_bytes()),
                f(&format!("blobs/sha256/{mh}"), m.as_bytes()),
                f(&format!("blobs/sha256/{ch}"), &cfg),
                f(&format!("blobs/sha256/{wrong}"), &gl),
            ]),
            "digest",
        ));
        // An index that lists itself through a chain deeper than any real image.
        let mut child = format!("sha256:{}", "2".repeat(64));
        let mut size = 2;
        let mut members = vec![f("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)];
        for _ in 0..12 {
            let idx = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{child}","size":{size}}}]}}"#
            );
            let h = sha(idx.as_bytes());
            members.push(f(&format!("blobs/sha256/{h}"), idx.as_bytes()));
            child = format!("sha256:{h}");
            size = idx.len();
        }
        members.push(f(
            "index.json",
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{child}","size":{size}}}]}}"#
            )
            .as_bytes(),
        ));
        cases.push((
            "OCI archive manifest loop".into(),
            tar_of(&members),
            "manifest loop",
        ));
    }
    {
        // Archive members named outside the archive, beside a valid image (own store).
        let e2 = Env::new();
        let canary2 = snapshot(&e2.canary());
        let mut a = docker_archive(&big, &big);
        a.truncate(a.len() - 1024);
        let extra = tar_of(&[
            f(&format!("{up}escape"), b"x"),
            f(&format!("{}/abs", abs(&e2.canary())), b"x"),
        ]);
        let a = [&a[..], &extra[..]].concat();
        let p = e2.input("members-outside.tar", &a);
        let out = e2.strata(&["load", "-i", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.trim().lines().count() == 1,
            "{err}"
        );
        assert_eq!(snapshot(&e2.canary()), canary2);
        assert!(!e2.dir.join("escape").exists() && !e.dir.join("escape").exists());
    }
    let n = cases.len();
    for (name, bytes, expect) in cases {
        let p = e.input(&format!("{}.tar", name.replace(' ', "-")), &bytes);
        let err = e.fails(&name, &["load", "-i", p.to_str().unwrap()]);
        assert!(
            err.contains(expect),
            "{name}: expected {expect:?} in: {err}"
        );
        assert_eq!(snapshot(&store), before, "{name}: the store changed");
        assert_eq!(
            snapshot(&canary),
            canary_before,
            "{name}: the canary changed"
        );
        assert!(!e.dir.join("escape").exists(), "{name}: written outside");
    }
    eprintln!("{n} hostile loads refused, store and canary unchanged");
}
