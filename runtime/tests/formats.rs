//! `--format` (docker's Go templates) on ps, images, inspect, history, info and version,
//! `-q` and `--no-trunc`, and `inspect` in docker's JSON shape. Real containers. Rootful.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod docker_env;
use docker_env::Env;

#[test]
fn ps_format_names_table_json_quiet_no_trunc() {
    let e = Env::new("fmt-ps");
    let id = e.ok(&["run", "-d", "--name", "web", "busybox", "sleep", "60"]);
    let id = id.trim();
    e.strata(&["run", "--name", "gone", "busybox", "sh", "-c", "exit 4"]);
    assert_eq!(e.ok(&["ps", "--format", "{{.Names}}"]), "web\n");
    let mut all: Vec<String> = e
        .ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"])
        .lines()
        .map(str::to_string)
        .collect();
    all.sort();
    assert_eq!(all, ["gone exited", "web running"]);
    let table = e.ok(&["ps", "--format", "table {{.ID}}\\t{{.Names}}\\t{{.Status}}"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("CONTAINER ID   NAMES   STATUS"),
        "{table}"
    );
    assert!(
        lines[1].starts_with(&id[..12]) && lines[1].contains("Up "),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(e.ok(&["ps", "--format", "{{json .}}"]).trim()).unwrap();
    assert_eq!(json["Names"], "web");
    assert_eq!(json["Command"], "\"sleep 60\"");
    assert_eq!(e.ok(&["ps", "-q"]).trim(), &id[..12]);
    assert_eq!(e.ok(&["ps", "-q", "--no-trunc"]).trim(), id);
    assert_eq!(
        e.ok(&["ps", "--format", "{{upper .Names}}-{{len .ID}}"]),
        "WEB-12\n"
    );
    let err = e.fails(&["ps", "--format", "{{.NoSuchField}}"]);
    assert!(
        err.contains("NoSuchField") && err.lines().count() == 1,
        "{err}"
    );
    let err = e.fails(&["ps", "--format", "{{.Names"]);
    assert!(err.contains("bad --format template"), "{err}");
}

#[test]
fn images_and_history_formats_and_quiet() {
    let e = Env::new("fmt-img");
    e.ok(&["tag", "busybox", "other:2"]);
    let q = e.ok(&["images", "-q"]);
    assert_eq!(q.lines().count(), 1, "one id per image: {q}");
    assert_eq!(q.trim().len(), 12);
    let full = e.ok(&["images", "-q", "--no-trunc"]);
    assert!(
        full.trim().starts_with("sha256:") && full.trim().len() == 71,
        "{full}"
    );
    let mut refs: Vec<String> = e
        .ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .lines()
        .map(str::to_string)
        .collect();
    refs.sort();
    assert_eq!(refs, ["busybox:latest", "other:2"]);
    assert_eq!(e.ok(&["images", "other", "--format", "{{.Tag}}"]), "2\n");
    let table = e.ok(&["images", "--format", "table {{.Repository}}\t{{.ID}}"]);
    assert!(table.starts_with("REPOSITORY   IMAGE ID\n"), "{table}");
    let h = e.ok(&[
        "history",
        "--format",
        "{{.CreatedBy}}|{{.Comment}}",
        "busybox",
    ]);
    assert!(h.starts_with("strata import"), "{h}");
    assert_eq!(e.ok(&["history", "-q", "busybox"]).lines().count(), 1);
}

#[test]
fn inspect_in_docker_shape_with_format_and_type() {
    let e = Env::new("fmt-insp");
    e.strata(&[
        "run", "--name", "c1", "-e", "A=1", "busybox", "sh", "-c", "exit 3",
    ]);
    assert_eq!(
        e.ok(&["inspect", "--format", "{{.State.ExitCode}}", "c1"]),
        "3\n"
    );
    assert_eq!(
        e.ok(&[
            "inspect",
            "-f",
            "{{.Name}} {{.State.Status}} {{.State.Running}} {{.Path}} {{json .Args}}",
            "c1"
        ]),
        "/c1 exited false sh [\"-c\",\"exit 3\"]\n"
    );
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "c1"])).unwrap();
    let c = &v[0];
    assert!(v.is_array());
    for k in [
        "Status",
        "Running",
        "Paused",
        "Restarting",
        "OOMKilled",
        "Dead",
        "Pid",
        "ExitCode",
        "Error",
        "StartedAt",
        "FinishedAt",
    ] {
        assert!(c["State"].get(k).is_some(), "State.{k} missing: {c}");
    }
    let created = c["Created"].as_str().unwrap();
    assert!(
        created.len() == 30 && created.ends_with('Z') && created.as_bytes()[19] == b'.',
        "{created}"
    );
    assert_eq!(c["Id"].as_str().unwrap().len(), 64);
    assert!(c["Image"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(c["RestartCount"], 0);
    assert_eq!(
        c["Config"]["Cmd"],
        serde_json::json!(["sh", "-c", "exit 3"])
    );
    assert_eq!(c["Config"]["Image"], "busybox");
    assert!(
        c["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "A=1"),
        "{c}"
    );
    assert!(
        c["Mounts"].is_array() && c["NetworkSettings"].is_object() && c["HostConfig"].is_object()
    );
    assert!(
        c["Strata"]["DriverReason"].is_string(),
        "strata's own details kept: {c}"
    );
    // Images: docker's image shape.
    let i: serde_json::Value =
        serde_json::from_str(&e.ok(&["inspect", "--type", "image", "busybox"])).unwrap();
    let i = &i[0];
    assert!(i["Id"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(i["RepoTags"], serde_json::json!(["busybox:latest"]));
    assert!(i["RepoDigests"].is_array());
    assert_eq!(i["Os"], "linux");
    assert_eq!(i["RootFS"]["Type"], "layers");
    assert_eq!(i["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    // --type container does not fall back to an image of that name.
    let err = e.fails(&["inspect", "--type", "container", "busybox"]);
    assert!(err.contains("no such container"), "{err}");
    assert_eq!(
        e.ok(&["image", "inspect", "-f", "{{.Os}}", "busybox"]),
        "linux\n"
    );
    assert_eq!(
        e.ok(&["container", "inspect", "-f", "{{.Name}}", "c1"]),
        "/c1\n"
    );
    // Several at once: one rendered line each.
    e.ok(&["run", "--name", "c2", "busybox", "true"]);
    assert_eq!(
        e.ok(&["inspect", "-f", "{{.State.ExitCode}}", "c1", "c2"]),
        "3\n0\n"
    );
}

#[test]
fn info_and_version_formats() {
    let e = Env::new("fmt-info");
    e.ok(&["run", "-d", "--name", "up", "busybox", "sleep", "60"]);
    assert_eq!(
        e.ok(&["info", "--format", "{{.ContainersRunning}} {{.Images}}"]),
        "1 1\n"
    );
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["info", "--format", "json"])).unwrap();
    assert!(
        v["Driver"].is_string() && v["DockerRootDir"].is_string(),
        "{v}"
    );
    let ver = env!("CARGO_PKG_VERSION");
    assert_eq!(
        e.ok(&["version", "--format", "{{.Client.Version}}"]),
        format!("{ver}\n")
    );
    assert_eq!(
        e.ok(&["version", "-f", "{{.Server.Version}}"]),
        format!("{ver}\n")
    );
    let plain = e.ok(&["version"]);
    assert!(
        plain.starts_with("Client:\n") && plain.contains("\nServer:"),
        "{plain}"
    );
}

#[test]
fn labels_and_run_options_in_ps_and_inspect() {
    let e = Env::new("fmt-labels");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "lab",
        "-l",
        "tier=web",
        "--label",
        "owner=me",
        "--restart",
        "on-failure:3",
        "--read-only",
        "--stop-signal",
        "USR1",
        "busybox",
        "sleep",
        "60",
    ]);
    assert_eq!(
        e.ok(&["ps", "--format", "{{.Labels}}"]),
        "owner=me,tier=web\n"
    );
    assert_eq!(
        e.ok(&["inspect", "-f", "{{index .Config.Labels \"tier\"}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}} {{.HostConfig.ReadonlyRootfs}} {{.Config.StopSignal}}", "lab"]),
        "web on-failure:3 true USR1\n"
    );
}
