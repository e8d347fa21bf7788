//! docker's flags of run, exec, ps and rm on real containers: `--flag=true|false` for every
//! boolean, and run's --env-file --mount --tmpfs --entrypoint --read-only --ulimit
//! --cpuset-cpus --group-add --add-host --dns --label --restart --pull, exec -d, ps
//! --filter/-n/-l.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod parity;
use parity::{poll, Env};

#[test]
fn boolean_flags_take_docker_values() {
    let e = Env::new("bools");
    // --rm=true removes, --rm=false keeps, the last one given wins.
    e.ok(&["run", "--rm=true", "--name", "gone", "busybox", "true"]);
    e.ok(&["run", "--rm=false", "--name", "kept", "busybox", "true"]);
    e.ok(&[
        "run",
        "--rm",
        "--rm=false",
        "--name",
        "kept2",
        "busybox",
        "true",
    ]);
    let all = e.ok(&["ps", "-a=true"]);
    assert!(
        !all.contains("gone") && all.contains("kept") && all.contains("kept2"),
        "{all}"
    );
    // --rm true: without '=' the word is the image (there is none called true).
    let err = e.fails(&["run", "--rm", "true", "busybox"]);
    assert!(err.contains("no such image: true"), "{err}");
    // -d=true / --detach=false, -i=false, --tty=false, --init=true.
    let id = e.ok(&["run", "-d=true", "--name", "bg", "busybox", "sleep", "100"]);
    assert_eq!(id.trim().len(), 64);
    let out = e.ok(&[
        "run",
        "--detach=false",
        "-i=false",
        "--tty=false",
        "--init=true",
        "--rm",
        "busybox",
        "cat",
        "/proc/1/comm",
    ]);
    assert_eq!(out, "docker-init\n");
    // ps: --all=false lists the running one only; -q=true.
    assert_eq!(
        e.ok(&["ps", "--all=false", "-q=true"]).trim(),
        &id.trim()[..12]
    );
    // rm -f=true, logs -f=false.
    e.ok(&["logs", "--follow=false", "bg"]);
    e.ok(&["rm", "-f=true", "bg"]);
    e.ok(&["rm", "--force=false", "kept", "kept2"]);
    // A value that is not a boolean is an error naming the flag.
    let err = e.fails(&["run", "--rm=maybe", "busybox", "true"]);
    assert!(err.contains("--rm"), "{err}");
}

#[test]
fn run_options_shape_the_container() {
    let e = Env::new("runopts");
    let envf = e.dir.join("env.list");
    std::fs::write(
        &envf,
        "# comment\nA=from-file\n\nB=two words\nC=overridden\n",
    )
    .unwrap();
    let script = "echo $A/$B/$C; touch /x 2>/dev/null || echo ro-root; \
                  touch /scratch/y && echo tmpfs-rw; df -k /scratch | awk 'NR==2 {print $2}'; \
                  df -k /t2 | awk 'NR==2 {print $2}'; \
                  ulimit -n; ulimit -Hn; id -G; grep -c '10.1.2.3.db.local' /etc/hosts; \
                  grep nameserver /etc/resolv.conf; grep Cpus_allowed_list /proc/self/status | tr -d '\\t'";
    let out = e.ok(&[
        "run",
        "--rm",
        "--env-file",
        envf.to_str().unwrap(),
        "-e",
        "C=cli",
        "--read-only",
        "--tmpfs",
        "/scratch:size=1m",
        "--mount",
        "type=tmpfs,dst=/t2,tmpfs-size=2m",
        "--ulimit",
        "nofile=100:200",
        "--group-add",
        "wheel",
        "--group-add",
        "77",
        "--add-host",
        "db.local:10.1.2.3",
        "--dns",
        "192.0.2.53",
        "--cpuset-cpus",
        "0",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(
        out,
        "from-file/two words/cli\nro-root\ntmpfs-rw\n1024\n2048\n100\n200\n0 10 77\n1\nnameserver 192.0.2.53\nCpus_allowed_list:0\n"
    );
    // --entrypoint replaces the image's and drops its CMD; the arguments follow it.
    assert_eq!(
        e.ok(&["run", "--rm", "--entrypoint", "echo", "busybox", "a", "b"]),
        "a b\n"
    );
    assert_eq!(
        e.ok(&["run", "--rm", "--entrypoint", "pwd", "busybox"]),
        "/\n"
    );
    // --pull never and missing run a local image (pulls: run_pull.rs).
    e.ok(&["run", "--rm", "--pull", "never", "busybox", "true"]);
    e.ok(&["run", "--rm", "--pull", "missing", "busybox", "true"]);
    // Bad values are refused before anything is created.
    for (flag, val) in [
        ("--ulimit", "nofile=9:1"),
        ("--ulimit", "bogus=1"),
        ("--restart", "sometimes"),
        ("--add-host", "nohost"),
        ("--dns", "not-an-ip"),
        ("--stop-signal", "SIGNOPE"),
        ("--tmpfs", "relative"),
        ("--mount", "type=bind,dst=/x"),
        ("--pull", "often"),
    ] {
        let err = e.fails(&["run", "--rm", flag, val, "busybox", "true"]);
        assert!(
            err.contains("invalid") || err.contains("unknown") || err.contains("needs"),
            "{flag} {val}: {err}"
        );
    }
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn labels_and_ps_filters() {
    let e = Env::new("psf");
    let one = [
        "run", "--name", "one", "--label", "tier=web", "-l", "x", "busybox", "sh", "-c", "exit 3",
    ];
    assert_eq!(e.run(&one).0, 3);
    e.ok(&["run", "--name", "two", "busybox", "true"]);
    e.ok(&[
        "run", "-d", "--name", "three", "--label", "tier=db", "busybox", "sleep", "100",
    ]);
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["ps"];
        a.extend_from_slice(args);
        e.ok(&a)
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().last().unwrap().to_string())
            .collect()
    };
    let sorted = |args: &[&str]| -> Vec<String> {
        let mut v = names(args);
        v.sort();
        v
    };
    assert_eq!(names(&["-a", "--filter", "label=tier=web"]), ["one"]);
    assert_eq!(sorted(&["-a", "--filter", "label=tier"]), ["one", "three"]);
    assert_eq!(names(&["-a", "--filter", "label=x"]), ["one"]);
    // Without -a a status filter still lists stopped ones, as docker.
    assert_eq!(sorted(&["--filter", "status=exited"]), ["one", "two"]);
    assert_eq!(names(&["--filter", "exited=3"]), ["one"]);
    assert_eq!(names(&["--filter", "status=running"]), ["three"]);
    // Same key twice: either; different keys: both.
    assert_eq!(
        sorted(&["-a", "-f", "name=one", "-f", "name=two"]),
        ["one", "two"]
    );
    assert_eq!(
        sorted(&["-a", "-f", "name=o", "-f", "status=exited"]),
        ["one", "two"]
    );
    assert_eq!(names(&["-a", "--filter", "ancestor=busybox"]).len(), 3);
    let id = e.ok(&["ps", "-q", "--filter", "name=three"]);
    assert_eq!(names(&["--filter", &format!("id={}", &id[..6])]), ["three"]);
    // -n N / -l: the newest, any state.
    assert_eq!(names(&["-n", "2"]), ["three", "two"]);
    assert_eq!(names(&["-l"]), ["three"]);
    assert!(e
        .fails(&["ps", "--filter", "colour=red"])
        .contains("unsupported --filter"));
}

#[test]
fn exec_detach_and_restart_policies() {
    let e = Env::new("restart");
    e.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "100"]);
    // exec -d returns at once; the command runs on in the container.
    let t = std::time::Instant::now();
    e.ok(&[
        "exec",
        "-d",
        "box",
        "sh",
        "-c",
        "sleep 0.3; echo done > /tmp/bg",
    ]);
    assert!(t.elapsed() < std::time::Duration::from_secs(3));
    poll("the detached exec", || {
        e.run(&["exec", "box", "cat", "/tmp/bg"]).1 == "done\n"
    });
    e.ok(&["rm", "-f", "box"]);
    // on-failure:2: two restarts after the first failure, then it stays exited.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "fail",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 4",
    ]);
    poll("the retries", || {
        let v = e.inspect("fail");
        v["State"]["Status"] == "exited" && v["Strata"]["State"]["supervisor"].is_null()
    });
    assert_eq!(e.ok(&["logs", "fail"]), "run\nrun\nrun\n");
    assert_eq!(e.inspect("fail")["RestartCount"], 2);
    assert_eq!(e.inspect("fail")["State"]["ExitCode"], 4);
    // on-failure does not restart a success; always does, until stop.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "okay",
        "--restart",
        "on-failure",
        "busybox",
        "echo",
        "run",
    ]);
    poll("the exit", || {
        e.inspect("okay")["Strata"]["State"]["supervisor"].is_null()
    });
    assert_eq!(e.ok(&["logs", "okay"]), "run\n");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "echo run; sleep 0.1",
    ]);
    poll("two restarts", || {
        e.ok(&["logs", "loop"]).lines().count() >= 3
    });
    e.ok(&["stop", "-t", "1", "loop"]);
    let n = e.ok(&["logs", "loop"]).lines().count();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        e.ok(&["logs", "loop"]).lines().count(),
        n,
        "restarted after stop"
    );
    assert!(e.inspect("loop")["Strata"]["State"]["supervisor"].is_null());
}
