//! A valid image pulls and runs; silent and dripping registries time out.

use super::*;

#[test]
fn valid_image_pulls_and_runs() {
    let e = Env::new();
    // Served behind a Bearer token service, its blobs redirected to a second server (as
    // registries redirect to a CDN): the same paths the refusals below take.
    let mut repo = Repo::default();
    let bb = busybox_tar();
    let mdigest = add_image(
        &mut repo,
        "1",
        &[bb.clone(), tar_raw(&[file("etc/extra", b"x")])],
    );
    let cdn_repo = repo.clone();
    let cdn = Server::start(move |r| cdn_repo.answer(r));
    let cdn_host = cdn.host();
    let token = "tok3n";
    let reg = Server::start(move |r| {
        let p = r.path.split('?').next().unwrap_or("");
        if p == "/token" {
            return Reply::Full(
                200,
                h(&[("Content-Type", "application/json")]),
                format!(r#"{{"token":"{token}"}}"#).into_bytes(),
            );
        }
        if r.header("Authorization") != Some(format!("Bearer {token}").as_str()) {
            let me = r.header("Host").unwrap_or("");
            return Reply::Full(
                401,
                h(&[(
                    "WWW-Authenticate",
                    &format!(
                        r#"Bearer realm="http://{me}/token",service="test",scope="repository:x:pull""#
                    ),
                )]),
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"auth"}]}"#.to_vec(),
            );
        }
        if p.starts_with("/v2/x/blobs/") {
            return Reply::Full(
                307,
                h(&[("Location", &format!("http://{cdn_host}{p}"))]),
                vec![],
            );
        }
        repo.answer(r)
    });
    let out = e.ok(&["pull", &format!("{}/x:1", reg.host())]);
    assert!(out.contains("2 layers, 2 fetched"), "{out}");
    let got = e.ok(&[
        "run",
        "--rm",
        &format!("{}/x:1", reg.host()),
        "cat",
        "/etc/extra",
    ]);
    assert_eq!(got, "x");
    // The blobs came from the second server, without the registry's token.
    let cdn_log = cdn.requests();
    assert_eq!(
        cdn_log
            .iter()
            .filter(|l| l.starts_with("GET /v2/x/blobs/"))
            .count(),
        3,
        "{cdn_log:?}"
    );
    assert!(
        cdn_log.iter().all(|l| !l.contains("[auth]")),
        "the token went to the redirect target: {cdn_log:?}"
    );
    // By digest (untagged): nothing fetched again.
    let out = e.ok(&["pull", &format!("{}/x@{mdigest}", reg.host())]);
    assert!(out.contains("2 layers, 0 fetched"), "{out}");
    // An image without layers is valid (docker builds them FROM scratch).
    let mut empty = Repo::default();
    let cfg = config_json(&[]);
    let len = cfg.len() as u64;
    let c = desc(OCI_CONFIG, &empty.blob(cfg), len);
    empty.manifest("empty", OCI_MANIFEST, manifest_json(&c, &[]));
    let s = Server::start(move |r| empty.answer(r));
    let out = e.ok(&["pull", &format!("{}/x:empty", s.host())]);
    assert!(out.contains("0 layers"), "{out}");
    assert!(e.ok(&["images"]).contains(&format!("{}/x", s.host())));
}

#[test]
fn silent_and_dripping_registries_time_out() {
    let e = Env::new();
    let _good = store_with_good_image(&e);
    let base = Baseline::take(&e);
    let mut repo = Repo::default();
    let big = tar_raw(&[file("etc/big", &[9u8; 300_000])]);
    add_image(&mut repo, "1", std::slice::from_ref(&big));
    let gz = gzip(&big);
    let ld = digest(&gz);
    type Hook = Box<dyn Fn(&Req) -> Option<Reply> + Send + Sync>;
    let cases: Vec<(&str, Hook, &str)> = vec![
        (
            "connection accepted, never answered",
            Box::new(|_: &Req| Some(Reply::Silent)),
            "no answer within 2 s",
        ),
        (
            "manifest dripping a byte every 300 ms",
            Box::new(|r: &Req| {
                r.path
                    .contains("/manifests/")
                    .then(|| Reply::Drip(h(&[("Content-Type", OCI_MANIFEST)]), 4000, b"{".to_vec()))
            }),
            "not received within 2 s",
        ),
        (
            "layer stalling half way",
            Box::new(move |r: &Req| {
                r.path
                    .contains(&format!("/blobs/{ld}"))
                    .then(|| Reply::Stall(h(&[]), gz.len() as u64, gz[..gz.len() / 2].to_vec()))
            }),
            "sent nothing for 2 s",
        ),
        (
            "token service never answering",
            Box::new(|r: &Req| {
                if r.path.starts_with("/token") {
                    return Some(Reply::Silent);
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
            }),
            "token service",
        ),
    ];
    for (name, hook, expect) in cases {
        let repo = repo.clone();
        let server = Server::start(move |r| hook(r).unwrap_or_else(|| repo.answer(r)));
        let reference = format!("{}/x:1", server.host());
        let (err, took) = base.refused(
            &e,
            name,
            &["pull", "--timeout", "2", &reference],
            expect,
            LIMIT,
        );
        assert!(
            took < Duration::from_secs(15),
            "{name}: took {took:?}: {err}"
        );
        eprintln!("{name} ({} ms): {err}", took.as_millis());
    }
    // The default bounds a stall too (not waited for here).
    let (out, _) = e.strata(&["pull", "--help"], LIMIT);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--timeout") && help.contains("[default: 60]"),
        "{help}"
    );
}
