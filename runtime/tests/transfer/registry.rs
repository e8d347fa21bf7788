//! Push and pull through a local registry, with and without basic auth.

use super::*;
use crate::common::registry::Registry;

pub(crate) fn field<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {out}"))
}

#[test]
fn registry_push_pull_mount_digest() {
    let e = Env::new();
    e.podman_images(true);
    let reg = Registry::start(&e.path("registry"));
    let host = reg.host();
    for (img, file) in [("app", "app.tar"), ("app2", "app2.tar")] {
        let p = e.path(file);
        e.podman_ok(&[
            "save",
            "-q",
            "-o",
            p.to_str().unwrap(),
            &format!("localhost/{img}:1"),
        ]);
        e.ok("src", &["load", "-i", p.to_str().unwrap()]);
    }
    // podman → strata → registry.
    let target = format!("{host}/team/app:1.2");
    let out = e.ok("src", &["push", "localhost/app:1", &target]);
    assert!(out.contains("3 layers, 3 uploaded"), "{out}");
    let digest = field(&out, "Digest: ").to_string();
    // Pushing again uploads nothing.
    let out = e.ok("src", &["push", "localhost/app:1", &target]);
    assert!(
        out.contains("0 uploaded") && out.contains("3 already present"),
        "{out}"
    );
    // An image sharing the base layer: that blob is skipped.
    let out = e.ok(
        "src",
        &["push", "localhost/app2:1", &format!("{host}/team/app2:1")],
    );
    assert!(out.contains("1 uploaded"), "{out}");
    assert!(
        out.contains("1 mounted") || out.contains("1 already present"),
        "{out}"
    );
    // Another repository of the same registry: blobs are mounted, not uploaded.
    let out = e.ok(
        "src",
        &["push", "localhost/app:1", &format!("{host}/other/app:1")],
    );
    assert!(
        out.contains("0 uploaded") && out.contains("3 mounted"),
        "{out}"
    );
    // registry → an empty store: every layer fetched, then runs.
    let before = reg.blob_gets().len();
    let out = e.ok("dst", &["pull", &target]);
    assert!(out.contains("3 fetched"), "{out}");
    assert!(out.contains(&digest), "{out}");
    assert_eq!(
        e.ok("dst", &["run", "--rm", &target, "cat", "/hello"]),
        "hello from a layer\n"
    );
    let after_first = reg.blob_gets().len();
    assert!(after_first >= before + 4, "config and 3 layers fetched");
    // Pulling again transfers no layer (only the small config blob is read).
    let out = e.ok("dst", &["pull", &target]);
    assert!(
        out.contains("0 fetched") && out.contains("3 already present"),
        "{out}"
    );
    assert_eq!(reg.blob_gets().len(), after_first + 1);
    // The second image fetches only its own layer.
    let out = e.ok("dst", &["pull", &format!("{host}/team/app2:1")]);
    assert!(
        out.contains("1 fetched") && out.contains("1 already present"),
        "{out}"
    );
    // By digest into yet another store (untagged), then run by id.
    let out = e.ok("bydigest", &["pull", &format!("{host}/team/app@{digest}")]);
    let id = field(&out, "Image: ").trim().to_string();
    assert!(id.starts_with("sha256:"), "{out}");
    assert_eq!(
        e.ok("bydigest", &["run", "--rm", &id, "echo", "ok"]),
        "ok\n"
    );
    // A digest that is not the manifest's is refused.
    let wrong = format!("{host}/team/app@sha256:{}", "0".repeat(64));
    let err = e.fails("bydigest", &["pull", &wrong]);
    assert!(err.contains("not found") || err.contains("digest"), "{err}");
    // registry → podman, and it runs there too.
    e.podman_ok(&["rmi", "-a", "-f"]);
    e.podman_ok(&["pull", "-q", "--tls-verify=false", &target]);
    assert_eq!(e.podman_run(&target, &["cat", "/two"]), "second layer\n");
    // skopeo agrees on the manifest digest.
    let out = check(
        &Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                &format!("docker://{target}"),
            ])
            .output()
            .unwrap(),
        "skopeo inspect",
    );
    assert!(out.contains(&digest), "{out}");
}

#[test]
fn registry_with_basic_auth() {
    need("htpasswd");
    let e = Env::new();
    e.podman_images(false);
    let htpasswd = e.path("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", "alice", "s3cret"])
        .output()
        .unwrap();
    std::fs::write(&htpasswd, check(&out, "htpasswd")).unwrap();
    let reg = Registry::start_with_auth(&e.path("registry"), Some(&htpasswd));
    let target = format!("{}/secure/app:1", reg.host());
    let p = e.path("app.tar");
    e.podman_ok(&["save", "-q", "-o", p.to_str().unwrap(), "localhost/app:1"]);
    e.ok("src", &["load", "-i", p.to_str().unwrap()]);
    let err = e.fails("src", &["push", "localhost/app:1", &target]);
    assert!(
        err.contains("needs credentials") && err.contains("--creds"),
        "{err}"
    );
    let err = e.fails(
        "src",
        &["push", "--creds", "alice:wrong", "localhost/app:1", &target],
    );
    assert!(err.contains("refused the credentials"), "{err}");
    let out = e.ok(
        "src",
        &[
            "push",
            "--creds",
            "alice:s3cret",
            "localhost/app:1",
            &target,
        ],
    );
    assert!(out.contains("3 uploaded"), "{out}");
    let err = e.fails("dst", &["pull", &target]);
    assert!(err.contains("needs credentials"), "{err}");
    let out = e.ok("dst", &["pull", "--creds", "alice:s3cret", &target]);
    assert!(out.contains("3 fetched"), "{out}");
    assert_eq!(e.ok("dst", &["run", "--rm", &target, "echo", "ok"]), "ok\n");
    // Credentials from a docker config.json.
    let cfg = e.path("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#,
            reg.host()
        ),
    )
    .unwrap();
    let out = Command::new(strata_bin())
        .arg("--root")
        .arg(e.path("dst2"))
        .args(["pull", &target])
        .env("DOCKER_CONFIG", &cfg)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(check(&out, "pull with config.json").contains("3 fetched"));
}
