//! docker's container and system commands on real containers: cp (both ways, stopped and
//! running, tar streams, symlinks resolved inside the container), wait, restart, rename,
//! pause/unpause, top, stats, port, events, system df/prune, the container/image groups,
//! login/logout against a local registry, and the grouped help. Rootful.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod docker_env;
use docker_env::{need, poll, Env};
use std::io::Write;
use std::process::Stdio;

#[test]
fn cp_both_ways_stopped_and_running() {
    let e = Env::new("cp");
    e.ok(&["run", "--name", "s", "busybox", "sh", "-c",
        "echo hi > /tmp/x; mkdir -p /d/e; echo f > /d/e/f; chmod 640 /d/e/f; ln -s /etc/passwd /tmp/pw"]);
    let out = e.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let o = out.to_str().unwrap();
    // Out of a stopped container: into a directory, to a new name, a directory tree.
    e.ok(&["cp", "s:/tmp/x", o]);
    assert_eq!(std::fs::read_to_string(out.join("x")).unwrap(), "hi\n");
    e.ok(&["cp", "s:/tmp/x", &format!("{o}/y")]);
    assert_eq!(std::fs::read_to_string(out.join("y")).unwrap(), "hi\n");
    e.ok(&["cp", "s:/d", &format!("{o}/d2")]);
    assert_eq!(std::fs::read_to_string(out.join("d2/e/f")).unwrap(), "f\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(out.join("d2/e/f"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    // dir/. copies the contents.
    e.ok(&["cp", "s:/d/.", &format!("{o}/contents")]);
    assert!(out.join("contents/e/f").is_file());
    // A symlink is copied as a symlink; -L copies what it points at, inside the container.
    e.ok(&["cp", "s:/tmp/pw", &format!("{o}/pw")]);
    assert_eq!(
        std::fs::read_link(out.join("pw"))
            .unwrap()
            .to_str()
            .unwrap(),
        "/etc/passwd"
    );
    e.ok(&["cp", "-L", "s:/tmp/pw", &format!("{o}/pw2")]);
    assert_eq!(
        std::fs::read_to_string(out.join("pw2")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    // Tar on stdout.
    let tar = e.strata(&["cp", "s:/d", "-"]);
    assert!(tar.status.success());
    let list = std::process::Command::new("tar")
        .arg("-t")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    list.stdin.as_ref().unwrap().write_all(&tar.stdout).unwrap();
    let listed = String::from_utf8(list.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(listed, "d/\nd/e/\nd/e/f\n");
    // Into a stopped container, then read back by running it.
    let host = e.path("host.txt");
    std::fs::write(&host, "from host\n").unwrap();
    e.ok(&["cp", host.to_str().unwrap(), "s:/tmp/"]);
    e.ok(&["cp", host.to_str().unwrap(), "s:/tmp/renamed"]);
    let back = e.ok(&["cp", "s:/tmp/renamed", "-"]);
    assert!(back.contains("from host"));
    // Into and out of a running one; a tar from stdin.
    e.ok(&["run", "-d", "--name", "r", "busybox", "sleep", "60"]);
    e.ok(&["cp", host.to_str().unwrap(), "r:/"]);
    assert_eq!(e.ok(&["exec", "r", "cat", "/host.txt"]), "from host\n");
    let mut c = e
        .cmd(&["cp", "-", "r:/tmp"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    assert!(c.wait().unwrap().success());
    assert_eq!(e.ok(&["exec", "r", "cat", "/tmp/d/e/f"]), "f\n");
    assert_eq!(e.ok(&["exec", "r", "stat", "-c", "%u", "/host.txt"]), "0\n");
    e.ok(&["exec", "r", "sh", "-c", "echo in > /tmp/made"]);
    e.ok(&["cp", "r:/tmp/made", o]);
    assert_eq!(std::fs::read_to_string(out.join("made")).unwrap(), "in\n");
    // Errors say what is wrong.
    assert!(e.fails(&["cp", "s:/no/such", o]).contains("no such"));
    assert!(e.fails(&["cp", "a", "b"]).contains("CONTAINER:PATH"));
}

#[test]
fn cp_never_follows_a_container_symlink_to_the_host() {
    let e = Env::new("cp-sym");
    let secret = e.path("host-secret");
    std::fs::write(&secret, "host only\n").unwrap();
    let victim = e.path("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let s = secret.to_str().unwrap();
    let v = victim.to_str().unwrap();
    // Absolute symlinks to host paths, a directory symlink, and a `..` chain.
    e.ok(&["run", "--name", "evil", "busybox", "sh", "-c", &format!(
        "ln -s {s} /tmp/file-link; ln -s {v} /tmp/dir-link; ln -s ../../../../../../../../{v} /tmp/dotdot; mkdir -p {v}; echo inside > {v}/mine"
    )]);
    let out = e.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let o = out.to_str().unwrap();
    // -L resolves inside the container: the host's secret is not what comes out.
    let got = e.strata(&["cp", "-L", "evil:/tmp/file-link", &format!("{o}/leak")]);
    assert!(
        !got.status.success(),
        "the target does not exist in the container"
    );
    assert!(!out.join("leak").exists());
    e.ok(&["cp", "evil:/tmp/dir-link/mine", &format!("{o}/mine")]);
    assert_eq!(
        std::fs::read_to_string(out.join("mine")).unwrap(),
        "inside\n"
    );
    e.ok(&["cp", "evil:/tmp/dotdot/mine", &format!("{o}/mine2")]);
    assert_eq!(
        std::fs::read_to_string(out.join("mine2")).unwrap(),
        "inside\n"
    );
    // Writing through the symlinks lands inside the container, never on the host.
    let payload = e.path("payload");
    std::fs::write(&payload, "payload\n").unwrap();
    let p = payload.to_str().unwrap();
    e.ok(&["cp", p, "evil:/tmp/file-link"]);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host only\n");
    e.ok(&["cp", p, "evil:/tmp/dir-link/"]);
    e.ok(&["cp", p, "evil:/tmp/dotdot/"]);
    assert!(!victim.join("payload").exists(), "written on the host");
    assert!(e
        .ok(&["cp", &format!("evil:{v}/payload"), "-"])
        .contains("payload"));
    // A tar from stdin with a path through a symlink is refused.
    let dir = e.path("t");
    std::fs::create_dir_all(dir.join("dir-link")).unwrap();
    std::fs::write(dir.join("dir-link/x"), "x").unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .args(["-cf", "-", "dir-link/x"])
        .output()
        .unwrap();
    let mut c = e
        .cmd(&["cp", "-", "evil:/tmp"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    let r = c.wait_with_output().unwrap();
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("not followed"),
        "{r:?}"
    );
    assert!(!victim.join("x").exists());
}

#[test]
fn wait_restart_rename_pause_top_stats_port() {
    let e = Env::new("verbs");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 7",
    ]);
    e.ok(&["run", "-d", "--name", "b", "busybox", "sh", "-c", "exit 2"]);
    assert_eq!(e.ok(&["wait", "a", "b"]), "7\n2\n");
    // A --rm container's status outlives its record (read from its die event).
    let id = e.ok(&[
        "run",
        "-d",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "sleep 0.5; exit 6",
    ]);
    assert_eq!(e.ok(&["wait", id.trim()]), "6\n");
    e.ok(&["rename", "a", "a2"]);
    assert_eq!(e.ok(&["inspect", "-f", "{{.Name}}", "a2"]), "/a2\n");
    assert!(e.fails(&["rename", "a2", "b"]).contains("already in use"));
    e.ok(&["run", "-d", "--name", "up", "busybox", "sleep", "60"]);
    let started = e.ok(&["inspect", "-f", "{{.State.Pid}}", "up"]);
    e.ok(&["restart", "-t", "1", "up"]);
    assert_eq!(
        e.ok(&["inspect", "-f", "{{.State.Status}}", "up"]),
        "running\n"
    );
    assert_ne!(e.ok(&["inspect", "-f", "{{.State.Pid}}", "up"]), started);
    let top = e.ok(&["top", "up"]);
    assert!(top.starts_with("UID") && top.contains("sleep 60"), "{top}");
    e.ok(&["pause", "up"]);
    assert_eq!(
        e.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "up"]),
        "paused true\n"
    );
    assert!(e
        .ok(&["ps", "--format", "{{.Status}}"])
        .contains("(Paused)"));
    assert!(e.fails(&["pause", "up"]).contains("already paused"));
    e.ok(&["unpause", "up"]);
    assert_eq!(
        e.ok(&["inspect", "-f", "{{.State.Status}}", "up"]),
        "running\n"
    );
    let stats = e.ok(&["stats", "--no-stream"]);
    assert!(
        stats.starts_with("CONTAINER ID   NAME   CPU %   MEM USAGE / LIMIT"),
        "{stats}"
    );
    let row = e.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}} {{.MemUsage}}",
        "up",
    ]);
    let f: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(f[0], "up");
    assert!(f[1].parse::<u32>().unwrap() >= 1, "{row}");
    assert!(row.contains(" / "), "{row}");
    // A busy container shows CPU use.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    poll("CPU use", || {
        let cpu = e.ok(&["stats", "--no-stream", "--format", "{{.CPUPerc}}", "busy"]);
        cpu.trim().trim_end_matches('%').parse::<f64>().unwrap() > 10.0
    });
    // port: nothing published yet, docker's forms parsed.
    assert_eq!(e.ok(&["port", "up"]), "");
    assert!(e
        .fails(&["port", "up", "80/tcp"])
        .contains("no public port"));
    assert!(e.fails(&["port", "up", "80/xyz"]).contains("invalid port"));
}

#[test]
fn events_since_until_filter_format() {
    let e = Env::new("events");
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    e.strata(&["run", "--name", "ev", "busybox", "sh", "-c", "exit 5"]);
    e.ok(&["rm", "ev"]);
    // An --until in the future streams until then: end at the present second.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let since = (t0 - 1).to_string();
    let all = e.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert_eq!(all, "create ev\nstart ev\ndie ev\ndestroy ev\n");
    let die = e.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "event=die",
        "--format",
        "{{.Actor.Attributes.exitCode}}",
    ]);
    assert_eq!(die, "5\n");
    let none = e.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=other",
    ]);
    assert_eq!(none, "");
    let text = e.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "event=create",
    ]);
    assert!(
        text.contains(" container create ") && text.contains("name=ev"),
        "{text}"
    );
    let old = e.ok(&["events", "--since", "1", "--until", &(t0 - 100).to_string()]);
    assert_eq!(old, "");
    // Without --until, new events stream as they happen.
    let mut follow = e
        .cmd(&[
            "events",
            "--since",
            &since,
            "--filter",
            "event=start",
            "--format",
            "{{.Actor.Attributes.name}}",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    e.ok(&["run", "--rm", "--name", "later", "busybox", "true"]);
    let mut r = std::io::BufReader::new(follow.stdout.take().unwrap());
    let mut lines = Vec::new();
    use std::io::BufRead;
    for _ in 0..2 {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        lines.push(l);
    }
    follow.kill().unwrap();
    follow.wait().unwrap();
    assert_eq!(lines, ["ev\n", "later\n"]);
    assert!(e
        .fails(&["events", "--filter", "bogus=1", "--until", "0"])
        .contains("unknown filter"));
}

#[test]
fn system_df_and_prune_and_groups() {
    let e = Env::new("sys");
    e.ok(&[
        "run",
        "--name",
        "stopped",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/big bs=1k count=300",
    ]);
    e.ok(&["run", "-d", "--name", "up", "busybox", "sleep", "60"]);
    e.ok(&["import", e.path("busybox.tar").to_str().unwrap(), "spare:1"]);
    let df = e.ok(&["system", "df"]);
    assert!(df.starts_with("TYPE"), "{df}");
    let images = e.ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Active}}",
    ]);
    assert!(
        images.contains("Images 2 1\n") && images.contains("Containers 2 1\n"),
        "{images}"
    );
    // Without -f and without a yes, nothing happens.
    let mut c = e
        .cmd(&["system", "prune"])
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    assert!(!c.status.success());
    c.stdout.clear();
    assert_eq!(e.ok(&["ps", "-a", "-q"]).lines().count(), 2);
    let out = e.ok(&["system", "prune", "-f"]);
    assert!(
        out.contains("Deleted Containers:") && out.contains("Total reclaimed space"),
        "{out}"
    );
    assert_eq!(
        e.ok(&["container", "ls", "-a", "--format", "{{.Names}}"]),
        "up\n"
    );
    // spare:1 is tagged: only -a removes it; busybox is in use and stays.
    assert_eq!(e.ok(&["image", "ls", "-q"]).lines().count(), 2);
    e.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(
        e.ok(&["image", "ls", "--format", "{{.Repository}}"]),
        "busybox\n"
    );
    // The groups are aliases of the top-level commands.
    e.ok(&["container", "stop", "-t", "1", "up"]);
    e.ok(&["container", "rm", "up"]);
    assert_eq!(e.ok(&["container", "list", "-a", "-q"]), "");
    e.ok(&["image", "tag", "busybox", "again:1"]);
    e.ok(&["image", "rm", "again:1"]);
    assert_eq!(
        e.ok(&["image", "history", "-q", "busybox"]).lines().count(),
        1
    );
    e.ok(&["run", "--name", "p", "busybox", "true"]);
    e.ok(&["container", "prune", "-f"]);
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn help_is_grouped_and_fs_tools_have_their_own_group() {
    let e = Env::new("help");
    let help = e.ok(&["--help"]);
    let first = help.lines().next().unwrap();
    assert!(first.starts_with("strata: "), "{help}");
    for h in [
        "Containers:",
        "Images:",
        "Filesystem tools:",
        "System:",
        "Integrations:",
        "Management groups:",
    ] {
        assert!(help.contains(h), "{h} missing: {help}");
    }
    assert_eq!(help.matches("--log-level").count(), 1, "{help}");
    let c = help.find("Containers:").unwrap();
    let i = help.find("Images:").unwrap();
    let run = help.find("\n  run ").unwrap();
    assert!(c < run && run < i, "run is a container command: {help}");
    let v = e.strata(&["run", "--version"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(!all.contains("strata-run"), "{all}");
    let ver = e.ok(&["--version"]);
    assert_eq!(ver, format!("strata {}\n", env!("CARGO_PKG_VERSION")));
    // `stats` is docker's container command; the union's counters are `fs stats`.
    assert!(e.ok(&["stats", "--help"]).contains("--no-stream"));
    assert!(
        e.ok(&["fs", "stats", "--help"]).contains("MOUNTPOINT")
            || e.ok(&["fs", "stats", "--help"])
                .contains("Usage: strata fs stats")
    );
    for tool in ["mount", "umount", "fsck", "compact", "trace", "whence"] {
        e.ok(&["fs", tool, "--help"]);
        e.ok(&[tool, "--help"]);
    }
}

#[test]
fn login_logout_with_a_local_registry() {
    need("docker-registry");
    need("htpasswd");
    let e = Env::new("login");
    let reg = docker_env::auth_registry(&e.path("registry"), "alice", "s3cret");
    let host = reg.host();
    let cfg = e.path("docker-config");
    let with_cfg = |args: &[&str]| {
        e.cmd(args)
            .env("DOCKER_CONFIG", &cfg)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let bad = with_cfg(&["login", "-u", "alice", "-p", "wrong", &host]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("refused the credentials"),
        "{bad:?}"
    );
    assert!(
        !cfg.join("config.json").exists(),
        "nothing stored on a refusal"
    );
    let mut c = e
        .cmd(&["login", "-u", "alice", "--password-stdin", &host])
        .env("DOCKER_CONFIG", &cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let ok = c.wait_with_output().unwrap();
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "Login Succeeded\n");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg.join("config.json")).unwrap()).unwrap();
    assert_eq!(stored["auths"][&host]["auth"], "YWxpY2U6czNjcmV0");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(cfg.join("config.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // push and pull use the stored credentials.
    let target = format!("{host}/team/bb:1");
    let push = with_cfg(&["push", "-q", "busybox", &target]);
    assert!(push.status.success(), "{push:?}");
    e.ok(&["rmi", "busybox"]);
    let pull = with_cfg(&["pull", "-q", &target]);
    assert!(pull.status.success(), "{pull:?}");
    let out = with_cfg(&["logout", &host]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Removing login credentials for {host}\n")
    );
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg.join("config.json")).unwrap()).unwrap();
    assert!(stored["auths"].get(&host).is_none());
    let pull = with_cfg(&["pull", "-q", &target]);
    assert!(!pull.status.success());
    assert!(
        String::from_utf8_lossy(&pull.stderr).contains("needs credentials"),
        "{pull:?}"
    );
}
