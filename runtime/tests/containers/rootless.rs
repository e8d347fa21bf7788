//! Containers run by an unprivileged user.

use super::*;

#[test]
fn rootless_runs_as_an_unprivileged_user() {
    let e = Env::new();
    let user = "strata-rootless";
    ensure_user(user);
    // As distributions ship it.
    common::rootless_devices();
    let home = e.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::copy(e.dir.join("busybox.tar"), home.join("busybox.tar")).unwrap();
    let st = Command::new("chown")
        .args(["-R", &format!("{user}:{user}")])
        .arg(&home)
        .status()
        .unwrap();
    assert!(st.success());
    let u = |args: &[&str]| as_user(user, &home, args);
    let tar = home.join("busybox.tar");
    let (code, _, err) = u(&["import", tar.to_str().unwrap(), "busybox"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        home.join("data/strata/layers").is_dir(),
        "store under $XDG_DATA_HOME"
    );
    let (_, info, _) = u(&["info"]);
    assert!(info.contains("Rootless: true"), "{info}");
    for driver in ["auto", "fuse"] {
        assert_eq!(
            u(&["run", "--rm", "--driver", driver, "busybox", "echo", "hello"]),
            (0, "hello\n".into(), String::new()),
            "{driver}"
        );
        assert_eq!(
            u(&["run", "--rm", "--driver", driver, "busybox", "sh", "-c", "exit 3"]).0,
            3
        );
        assert_eq!(
            u(&[
                "run",
                "--rm",
                "--init",
                "--driver",
                driver,
                "busybox",
                "sh",
                "-c",
                "kill -9 $$"
            ])
            .0,
            137
        );
        // Root inside is the caller; other users come from its subordinate range.
        let (code, out, err) = u(&[
            "run",
            "--rm",
            "--driver",
            driver,
            "-u",
            "1000",
            "busybox",
            "sh",
            "-c",
            "id -u; ls -ln /etc/keep | cut -c1-20; cat /etc/keep",
        ]);
        assert_eq!(code, 0, "{driver}: {err}");
        assert_eq!(out, "1000\n-rw-r--r--    1 0   \noriginal\n", "{driver}");
    }
    let (code, out, err) = u(&[
        "run",
        "--name",
        "rc",
        "--driver",
        "fuse",
        "busybox",
        "sh",
        "-c",
        "echo rootless > /tmp/r; chmod 600 /etc/motd",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        u(&["diff", "rc"]).1,
        "C /etc\nC /etc/motd\nC /tmp\nA /tmp/r\n"
    );
    assert_eq!(u(&["commit", "rc", "rimg"]).0, 0);
    assert_eq!(
        u(&["run", "--rm", "rimg", "sh", "-c", "cat /tmp/r /etc/motd"]).1,
        "rootless\nmotd text\n"
    );
    assert_eq!(u(&["rm", "rc"]).0, 0);
    // Tracing, /etc files and exec -t work rootless too.
    let trace = home.join("ops.jsonl");
    let (code, out, err) = u(&[
        "run",
        "--rm",
        "--trace",
        trace.to_str().unwrap(),
        "--net",
        "host",
        "-h",
        "rl",
        "busybox",
        "sh",
        "-c",
        "cat /etc/keep /etc/hostname /etc/hosts; echo x > /tmp/w",
    ]);
    assert_eq!(code, 0, "{err}");
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    assert_eq!(out, format!("original\nrl\n{hosts}"));
    let lines = trace_lines(&trace);
    assert!(lines
        .iter()
        .any(|l| l["op"] == "read" && l["path"] == "/etc/keep"));
    assert!(lines
        .iter()
        .any(|l| l["op"] == "write" && l["path"] == "/tmp/w"));
    let (code, _, err) = u(&["run", "-d", "--name", "rt", "busybox", "sleep", "1000"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = u(&["exec", "-t", "rt", "tty"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().starts_with("/dev/pts/"), "{out:?}");
    assert_eq!(u(&["rm", "-f", "rt"]).0, 0);
    let (code, _, err) = u(&["run", "--rm", "--memory", "64m", "busybox", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("--memory cannot be applied rootless"), "{err}");
    assert_eq!(u(&["ps", "-a", "-q"]).1, "");
    // The user's files can all be removed by root afterwards (Env's drop).
}
