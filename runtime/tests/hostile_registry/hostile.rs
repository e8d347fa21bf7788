//! Hostile registries are refused and change nothing.

use super::*;

#[test]
fn hostile_registries_are_refused_and_change_nothing() {
    let e = Env::new();
    let _good = store_with_good_image(&e);
    let base = Baseline::take(&e);
    let canary = e.dir.join("canary");
    let up = "../".repeat(12);

    // A valid one-layer image to break in one place at a time.
    let small = tar_raw(&[file("etc/hostname", b"hostile\n")]);
    let mut repo = Repo::default();
    let mdigest = add_image(&mut repo, "1", std::slice::from_ref(&small));
    let (_, m_bytes) = repo.manifests["1"].clone();
    let m: serde_json::Value = serde_json::from_slice(&m_bytes).unwrap();
    let cfg_digest = m["config"]["digest"].as_str().unwrap().to_string();
    let layer_digest = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let cfg_bytes = repo.blobs[&cfg_digest].clone();
    let cfg_len = cfg_bytes.len() as u64;
    let cfgd = desc(OCI_CONFIG, &cfg_digest, cfg_len);
    let layer_gz = repo.blobs[&layer_digest].clone();
    let layerd = desc(LAYER_GZIP, &layer_digest, layer_gz.len() as u64);

    // Each case: a name, how to make the repository (and an optional override of the
    // answer), the tag or @digest to pull, the expected words in the error.
    type Hook = Box<dyn Fn(&Req) -> Option<Reply> + Send + Sync>;
    struct Case {
        name: &'static str,
        repo: Repo,
        hook: Option<Hook>,
        pull: String,
        expect: &'static str,
    }
    let mut cases: Vec<Case> = Vec::new();
    let mut add = |name, repo: Repo, hook: Option<Hook>, pull: &str, expect| {
        cases.push(Case {
            name,
            repo,
            hook,
            pull: pull.to_string(),
            expect,
        })
    };
    fn with_manifest(base: &Repo, tag: &str, body: Vec<u8>) -> Repo {
        let mut r = base.clone();
        r.manifest(tag, OCI_MANIFEST, body);
        r
    }
    fn on(
        path_part: impl Into<String>,
        reply: impl Fn() -> Reply + Send + Sync + 'static,
    ) -> Option<Hook> {
        let part = path_part.into();
        Some(Box::new(move |r: &Req| r.path.contains(&part).then(&reply)))
    }

    // Digests.
    {
        let other = manifest_json(&cfgd, &[]);
        let mut r = repo.clone();
        r.manifests
            .insert(mdigest.clone(), (OCI_MANIFEST.into(), other));
        add(
            "manifest by digest with other content",
            r,
            None,
            &format!("@{mdigest}"),
            "digest",
        );
    }
    {
        let other = digest(b"another manifest");
        let body = m_bytes.clone();
        add(
            "tag manifest unlike its Docker-Content-Digest",
            repo.clone(),
            on("/manifests/1", move || {
                Reply::Full(
                    200,
                    h(&[
                        ("Content-Type", OCI_MANIFEST),
                        ("Docker-Content-Digest", &other),
                    ]),
                    body.clone(),
                )
            }),
            ":1",
            "Docker-Content-Digest|says its digest",
        );
    }
    {
        let mut r = repo.clone();
        let mut bad = cfg_bytes.clone();
        let n = bad.len();
        bad[n - 2] = b' ';
        r.blobs.insert(cfg_digest.clone(), bad);
        add("config unlike its digest", r, None, ":1", "digest");
    }
    {
        // Same size, same diff_id: only the blob digest tells.
        let mut r = Repo::default();
        let t = tar_raw(&[file("etc/a", b"aaaa")]);
        let t2 = tar_raw(&[file("etc/b", b"bbbb")]);
        let cfg = config_json(&[digest(&t)]);
        let cl = cfg.len() as u64;
        let c = desc(OCI_CONFIG, &r.blob(cfg), cl);
        let l = desc(LAYER_TAR, &digest(&t2), t2.len() as u64);
        r.blobs.insert(digest(&t2), t);
        r.manifest("1", OCI_MANIFEST, manifest_json(&c, &[l]));
        add("layer unlike its digest", r, None, ":1", "blob has digest");
    }
    {
        let mut r = Repo::default();
        let t = tar_raw(&[file("etc/a", b"aaaa")]);
        let cfg = config_json(&[digest(b"something else")]);
        let cl = cfg.len() as u64;
        let c = desc(OCI_CONFIG, &r.blob(cfg), cl);
        let tl = t.len() as u64;
        let l = desc(LAYER_TAR, &r.blob(t), tl);
        r.manifest("1", OCI_MANIFEST, manifest_json(&c, &[l]));
        add(
            "layer unlike its diff_id",
            r,
            None,
            ":1",
            "diff_id|image config lists",
        );
    }
    {
        let big = tar_raw(&[file("etc/big", &[7u8; 200_000])]);
        let gz = gzip(&big);
        let mut r = Repo::default();
        add_image(&mut r, "1", &[big]);
        let ld = digest(&gz);
        let half = gz[..gz.len() / 2].to_vec();
        let n = gz.len() as u64;
        add(
            "layer cut off mid-stream",
            r,
            on(format!("/blobs/{ld}"), move || {
                Reply::Short(h(&[]), n, half.clone())
            }),
            ":1",
            "closed before|truncated|corrupt|unexpected end",
        );
    }
    // Hostile layer tars.
    for (name, t, expect) in [
        (
            "layer with ../",
            tar_raw(&[file(&format!("a/{up}escape"), b"x")]),
            "escapes the root",
        ),
        (
            "layer a -> /etc then a/passwd",
            tar_raw(&[
                ("a", tar::EntryType::Symlink, b"", "/etc"),
                file("a/passwd", b"pwned::0:0::/:/bin/sh\n"),
            ]),
            "symlink|not a directory",
        ),
        (
            "layer with an absolute name",
            tar_raw(&[file(&format!("{}/abs", canary.display()), b"x")]),
            "absolute path",
        ),
    ] {
        let mut r = Repo::default();
        add_image(&mut r, "1", &[t]);
        add(name, r, None, ":1", expect);
    }
    // Sizes.
    {
        let junk = b"[{\"a\":1},".repeat(1000);
        add(
            "manifest of 100 MiB",
            repo.clone(),
            on("/manifests/1", move || {
                Reply::Flood(
                    h(&[("Content-Type", OCI_MANIFEST)]),
                    100 << 20,
                    junk.clone(),
                )
            }),
            ":1",
            "larger than",
        );
    }
    {
        let junk = b"{\"manifests\":[".repeat(1000);
        add(
            "endless index",
            repo.clone(),
            on("/manifests/1", move || {
                Reply::Endless(h(&[("Content-Type", OCI_INDEX)]), junk.clone())
            }),
            ":1",
            "larger than",
        );
    }
    {
        let cd = cfg_digest.clone();
        add(
            "endless config (manifest gives its size)",
            repo.clone(),
            on(format!("/blobs/{cd}"), || {
                Reply::Endless(h(&[]), b"{\"a\":\"".repeat(1000))
            }),
            ":1",
            "more than",
        );
        let huge = desc(OCI_CONFIG, &cfg_digest, 100 << 20);
        add(
            "config of 100 MiB by its descriptor",
            with_manifest(
                &repo,
                "1",
                manifest_json(&huge, std::slice::from_ref(&layerd)),
            ),
            None,
            ":1",
            "more than",
        );
        let nosize = format!(r#"{{"mediaType":"{OCI_CONFIG}","digest":"{cfg_digest}"}}"#);
        let cd = cfg_digest.clone();
        let mut r = with_manifest(
            &repo,
            "1",
            manifest_json(&nosize, std::slice::from_ref(&layerd)),
        );
        r.blobs.remove(&cd);
        add(
            "endless config without a size",
            r,
            on(format!("/blobs/{cd}"), || {
                Reply::Endless(h(&[]), b"{\"a\":\"".repeat(1000))
            }),
            ":1",
            "larger than",
        );
    }
    {
        let ld = layer_digest.clone();
        let gz = layer_gz.clone();
        add(
            "layer longer than its descriptor",
            repo.clone(),
            // Valid empty gzip members: without a bound, reading "the rest of the blob"
            // never ends.
            on(format!("/blobs/{ld}"), move || {
                Reply::EndlessAfter(h(&[]), gz.clone(), gzip(b"").repeat(1000))
            }),
            ":1",
            "more than the",
        );
    }
    // Indexes.
    {
        let mut r = repo.clone();
        let entry = platform_entry(OCI_MANIFEST, &mdigest, m_bytes.len(), "linux", arch());
        let inner = index_json(&[entry]);
        let inner_d = r.manifest("inner", OCI_INDEX, inner.clone());
        let outer = index_json(&[platform_entry(
            OCI_INDEX,
            &inner_d,
            inner.len(),
            "linux",
            arch(),
        )]);
        let outer_d = digest(&outer);
        r.manifests
            .insert("chain".into(), (OCI_INDEX.into(), outer.clone()));
        add(
            "index of an index",
            r.clone(),
            None,
            ":chain",
            "nested indexes",
        );
        // An index naming itself: whatever the server sends for that digest cannot match.
        let mut r2 = r.clone();
        let selfish = index_json(&[platform_entry(
            OCI_INDEX,
            &outer_d,
            outer.len(),
            "linux",
            arch(),
        )]);
        r2.manifests
            .insert("self".into(), (OCI_INDEX.into(), selfish.clone()));
        r2.manifests
            .insert(outer_d.clone(), (OCI_INDEX.into(), selfish));
        add("index referring to itself", r2, None, ":self", "digest");
        let other = index_json(&[
            platform_entry(OCI_MANIFEST, &mdigest, m_bytes.len(), "linux", "s390x"),
            platform_entry(OCI_MANIFEST, &mdigest, m_bytes.len(), "windows", arch()),
        ]);
        r.manifests
            .insert("other".into(), (OCI_INDEX.into(), other));
        add(
            "index without this platform",
            r.clone(),
            None,
            ":other",
            "no image for linux/",
        );
        let md5 = index_json(&[platform_entry(
            OCI_MANIFEST,
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            m_bytes.len(),
            "linux",
            arch(),
        )]);
        r.manifests.insert("weak".into(), (OCI_INDEX.into(), md5));
        add(
            "index entry with an md5 digest",
            r,
            None,
            ":weak",
            "unsupported digest",
        );
    }
    // Manifests.
    {
        add(
            "0 layers but the config has 1",
            with_manifest(&repo, "1", manifest_json(&cfgd, &[])),
            None,
            ":1",
            "lists 0 layers",
        );
        let bz = desc(
            "application/vnd.oci.image.layer.v1.tar+bzip2",
            &layer_digest,
            layer_gz.len() as u64,
        );
        add(
            "layer media type bzip2",
            with_manifest(&repo, "1", manifest_json(&cfgd, &[bz])),
            None,
            ":1",
            "cannot unpack",
        );
        let helm = desc(
            "application/vnd.cncf.helm.config.v1+json",
            &cfg_digest,
            cfg_len,
        );
        add(
            "a helm chart, not an image",
            with_manifest(
                &repo,
                "1",
                manifest_json(&helm, std::slice::from_ref(&layerd)),
            ),
            None,
            ":1",
            "not a container image",
        );
        for (name, d, expect) in [
            (
                "config digest sha256:../../etc",
                "sha256:../../etc",
                "malformed digest",
            ),
            (
                "layer digest with path characters",
                "sha256:../../../../etc/passwd",
                "malformed digest",
            ),
            (
                "layer digest sha512",
                &*format!("sha512:{}", "a".repeat(128)),
                "unsupported digest",
            ),
        ] {
            let body = if name.starts_with("config") {
                manifest_json(&desc(OCI_CONFIG, d, cfg_len), std::slice::from_ref(&layerd))
            } else {
                manifest_json(&cfgd, &[desc(LAYER_GZIP, d, 100)])
            };
            add(name, with_manifest(&repo, "1", body), None, ":1", expect);
        }
        let mut r = Repo::default();
        let cfg = config_json(&["sha256:../../../x".to_string()]);
        let cl = cfg.len() as u64;
        let c = desc(OCI_CONFIG, &r.blob(cfg), cl);
        let l = desc(LAYER_GZIP, &layer_digest, layer_gz.len() as u64);
        r.blobs.insert(layer_digest.clone(), layer_gz.clone());
        r.manifest("1", OCI_MANIFEST, manifest_json(&c, &[l]));
        add(
            "diff_id with path characters",
            r,
            None,
            ":1",
            "malformed digest",
        );
        add(
            "schema 1 manifest",
            with_manifest(
                &repo,
                "1",
                br#"{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[]}"#.to_vec(),
            ),
            None,
            ":1",
            "schema 1",
        );
        add(
            "manifest not JSON",
            with_manifest(&repo, "1", b"<html>\n<h1>It works!</h1>\n".to_vec()),
            None,
            ":1",
            "not valid JSON",
        );
        add(
            "error message with a newline and an escape",
            repo.clone(),
            on("/manifests/1", || {
                Reply::Full(
                    500,
                    h(&[("Content-Type", "application/json")]),
                    br#"{"errors":[{"code":"X","message":"line one\nline two \u001b[31mred"}]}"#
                        .to_vec(),
                )
            }),
            ":1",
            "HTTP 500",
        );
    }
    // Redirects.
    {
        let ld = layer_digest.clone();
        add(
            "blob redirect loop",
            repo.clone(),
            on(format!("/blobs/{ld}"), move || {
                Reply::Full(
                    307,
                    h(&[("Location", &format!("/v2/x/blobs/{ld}?again"))]),
                    vec![],
                )
            }),
            ":1",
            "Too Many Redirects|redirect",
        );
        let ld = layer_digest.clone();
        add(
            "blob redirect to file:///etc/passwd",
            repo.clone(),
            on(format!("/blobs/{ld}"), || {
                Reply::Full(307, h(&[("Location", "file:///etc/passwd")]), vec![])
            }),
            ":1",
            "only http and https",
        );
    }
    // Token services.
    type Make = Box<dyn Fn() -> Reply + Send + Sync>;
    let token_cases: Vec<(&str, Make, &str)> = vec![
        (
            "token service answering garbage",
            Box::new(|| Reply::Full(200, h(&[]), b"\x00\xffnot json\n\n".to_vec())),
            "something else than a token",
        ),
        (
            "token of 2 MiB",
            Box::new(|| {
                let mut t = b"{\"token\":\"".to_vec();
                t.extend(vec![b'A'; 2 << 20]);
                t.extend(b"\"}");
                Reply::Full(200, h(&[("Content-Type", "application/json")]), t)
            }),
            "more than",
        ),
        (
            "endless token",
            Box::new(|| Reply::Endless(h(&[]), b"AAAAAAAA".repeat(1024))),
            "more than",
        ),
        (
            "token service error",
            Box::new(|| {
                Reply::Full(
                    500,
                    h(&[]),
                    br#"{"errors":[{"code":"X","message":"token service on fire"}]}"#.to_vec(),
                )
            }),
            "HTTP 500",
        ),
        (
            "token answer without a token",
            Box::new(|| Reply::Full(200, h(&[]), br#"{"expires_in":60}"#.to_vec())),
            "no token",
        ),
    ];
    for (name, token, expect) in token_cases {
        add(
            name,
            repo.clone(),
            Some(Box::new(move |r: &Req| {
                if r.path.starts_with("/token") {
                    return Some(token());
                }
                let me = r.header("Host").unwrap_or("");
                Some(Reply::Full(
                    401,
                    h(&[(
                        "WWW-Authenticate",
                        &format!(r#"Bearer realm="http://{me}/token",service="t""#),
                    )]),
                    vec![],
                ))
            })),
            ":1",
            expect,
        );
    }
    for (name, challenge, expect) in [
        (
            "realm file:///etc/passwd",
            r#"Bearer realm="file:///etc/passwd""#.to_string(),
            "token service",
        ),
        (
            "challenge header of 1 MiB",
            format!(
                r#"Bearer realm="http://127.0.0.1:1/{}""#,
                "a".repeat(1 << 20)
            ),
            "header|Header",
        ),
    ] {
        add(
            name,
            repo.clone(),
            Some(Box::new(move |_: &Req| {
                Some(Reply::Full(
                    401,
                    h(&[("WWW-Authenticate", &challenge)]),
                    vec![],
                ))
            })),
            ":1",
            expect,
        );
    }
    add(
        "token accepted, then 401 again",
        repo.clone(),
        Some(Box::new(|r: &Req| {
            if r.path.starts_with("/token") {
                return Some(Reply::Full(200, h(&[]), br#"{"token":"t"}"#.to_vec()));
            }
            let me = r.header("Host").unwrap_or("");
            Some(Reply::Full(
                401,
                h(&[(
                    "WWW-Authenticate",
                    &format!(r#"Bearer realm="http://{me}/token""#),
                )]),
                vec![],
            ))
        })),
        ":1",
        "refused the credentials",
    );

    let n = cases.len();
    let mut report = Vec::new();
    let mut redirect_loop_requests = 0;
    for c in cases {
        let Case {
            name,
            repo,
            hook,
            pull,
            expect,
        } = c;
        let server = Server::start(move |r| {
            if let Some(h) = &hook {
                if let Some(reply) = h(r) {
                    return reply;
                }
            }
            repo.answer(r)
        });
        let reference = format!("{}/x{pull}", server.host());
        let (err, took) = base.refused(&e, name, &["pull", &reference], expect, LIMIT);
        if name == "blob redirect loop" {
            redirect_loop_requests = server.requests().len();
        }
        if name == "index entry with an md5 digest" {
            let log = server.requests();
            assert!(
                log.iter().all(|l| !l.contains("md5:")),
                "{name}: fetched: {log:?}"
            );
        }
        if name == "error message with a newline and an escape" {
            assert!(!err.contains('\x1b'), "{name}: {err:?}");
        }
        report.push(format!("{name} ({} ms): {err}", took.as_millis()));
    }
    assert!(
        (2..=10).contains(&redirect_loop_requests),
        "the redirect loop took {redirect_loop_requests} requests"
    );
    for r in &report {
        eprintln!("{r}");
    }
    eprintln!("{n} hostile registries refused, store and canary unchanged");
    // The good image is untouched and still runs.
    assert_eq!(
        e.ok(&[
            "run",
            "--rm",
            &format!("{}/x:good", _good.host()),
            "echo",
            "ok"
        ]),
        "ok\n"
    );
}
