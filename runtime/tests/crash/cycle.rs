//! One crash cycle: start, kill, recover and verify the container's root.

use super::*;

/// The sequence numbers /w/log promises: "1\n2\n…m\n", maybe followed by a torn prefix
/// of the next line (an append the crash interrupted).
pub(crate) fn logged(log: &[u8]) -> usize {
    let text = String::from_utf8(log.to_vec())
        .unwrap_or_else(|_| panic!("/w/log is not text: {:?}", String::from_utf8_lossy(log)));
    let mut m = 0;
    let mut parts = text.split('\n').peekable();
    while let Some(line) = parts.next() {
        if parts.peek().is_none() {
            assert!(
                line.is_empty() || format!("{}", m + 1).starts_with(line),
                "/w/log ends with {line:?} after {m}"
            );
            break;
        }
        assert_eq!(line, format!("{}", m + 1), "/w/log line {} is wrong", m + 1);
        m += 1;
    }
    m
}

/// Check what the restarted container's root shows (read through its init's root).
/// `early`: the kill came before the writer logged anything, so there may be no log.
pub(crate) fn verify_root(root: &Path, what: &str, early: bool) -> usize {
    let m = match std::fs::read(root.join("w/log")) {
        Ok(log) => logged(&log),
        Err(e) if early && e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => panic!("{what}: /w/log: {e}"),
    };
    assert!(
        early || m >= 1,
        "{what}: the first fsync'ed log line is gone"
    );
    for i in 1..=m {
        let p = root.join(format!("w/d/f{i}"));
        let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{what}: {}: {e}", p.display()));
        let want = yes(&format!("f{i}-"), (i * 7919) % 200000 + 1);
        assert!(
            got == want,
            "{what}: fsync'ed /w/d/f{i} differs ({} bytes, want {})",
            got.len(),
            want.len()
        );
    }
    let blob = std::fs::read(root.join("big/blob")).unwrap();
    assert_eq!(blob.len(), BIG_BLOCKS * BLOCK, "{what}: /big/blob size");
    for (b, got) in blob.chunks(BLOCK).enumerate() {
        let new = (b >= 1).then(|| yes(&format!("b{b}-"), BLOCK));
        let ok = if b >= 1 && b <= m {
            new.as_deref() == Some(got)
        } else if b == m + 1 {
            // Written but not yet logged: old or new, never a mix.
            got == lower_block(b) || new.as_deref() == Some(got)
        } else {
            got == lower_block(b)
        };
        assert!(
            ok,
            "{what}: /big/blob block {b} is wrong (logged up to {m}): {:?}",
            String::from_utf8_lossy(&got[..32])
        );
    }
    m
}

/// Commands that may be the first one to see a crashed container.
pub(crate) const FIRST: [&str; 6] = ["ps", "inspect", "diff", "export", "logs", "stop"];

pub(crate) fn first_cmd(e: &Env, first: &str, name: &str) -> Vec<String> {
    let export = e.dir.join("export.tar").display().to_string();
    let args: Vec<&str> = match first {
        "ps" => vec!["ps", "-a"],
        "export" => vec!["export", "-o", &export, name],
        other => vec![other, name],
    };
    args.into_iter().map(String::from).collect()
}

/// The container (the only one in the store).
pub(crate) fn only_container(e: &Env) -> String {
    let ids: Vec<String> = std::fs::read_dir(e.root().join("containers"))
        .unwrap()
        .flatten()
        .filter(|d| d.path().join("config.json").is_file())
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids.len(), 1, "one container in the store: {ids:?}");
    ids.into_iter().next().unwrap()
}

/// `strata run -d ARGS` with its supervisor SIGKILLed `after` it was forked (while it
/// mounts the root, creates cgroups, starts init, or, when it was quick, afterwards); what
/// `run -d` said.
pub(crate) fn run_killing_the_supervisor(
    e: &Env,
    args: &[&str],
    after: Duration,
) -> Result<String, String> {
    let mut front = Command::new(strata_bin())
        .arg("--root")
        .arg(e.root())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let fpid = front.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(60);
    let supervisor = loop {
        let child = all_pids().into_iter().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rfind(')')
                    .and_then(|i| s[i + 1..].split_whitespace().nth(1))
                    .is_some_and(|pp| pp == fpid.to_string())
            })
        });
        if let Some(p) = child {
            break Some(p);
        }
        if front.try_wait().unwrap().is_some() {
            break None;
        }
        assert!(Instant::now() < deadline, "no supervisor forked by run -d");
        std::thread::sleep(Duration::from_millis(1));
    };
    // Forked but not yet known to ps: either it is still starting or it has gone.
    let supervisor = supervisor.or_else(|| {
        let id = only_container(e);
        e.state(&id)["supervisor"].as_i64().map(|p| p as i32)
    });
    std::thread::sleep(after);
    if let Some(p) = supervisor {
        kill9(p);
    }
    let out = front.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// One crash: start the writer, SIGKILL `kill` (at once, or `delay` after the writer's
/// first fsync, or `delay` into the start), check, restart, check, remove.
pub(crate) fn crash_once(
    e: &Env,
    driver: &str,
    n: usize,
    kill: Kill,
    delay: Option<Duration>,
    first: &str,
) -> String {
    let name = format!("crash-{driver}-{n}");
    let ctl = e.dir.join(format!("ctl-{name}"));
    std::fs::create_dir_all(&ctl).unwrap();
    let vol = format!("{}:/ctl", ctl.display());
    let args = [
        "run", "-d", "--name", &name, "--driver", driver, "-v", &vol, "crashimg", "sh", "-c",
        SCRIPT,
    ];
    // Whether the writer may not have logged anything before the kill.
    let early = delay.is_none() || kill == Kill::Starting;
    let mut run_d = "";
    let (id, procs) = if kill == Kill::Starting {
        let said = run_killing_the_supervisor(e, &args, delay.unwrap_or_default());
        run_d = if said.is_ok() {
            "run -d succeeded, "
        } else {
            "run -d failed, "
        };
        let id = only_container(e);
        match &said {
            Ok(out) => assert_eq!(out, &id),
            Err(msg) => assert!(
                msg.trim_end().lines().count() == 1 && msg.contains("supervisor died"),
                "run -d with its supervisor killed said: {msg}"
            ),
        }
        let procs = Procs::of(&id, e.state(&id)["pid"].as_i64().map(|p| p as i32));
        (id, procs)
    } else {
        let id = e.ok(&args).trim().to_string();
        let st = e.state(&id);
        let procs = Procs::of(&id, st["pid"].as_i64().map(|p| p as i32));
        assert!(
            procs.init.is_some(),
            "the container's init is not running: {st}"
        );
        let upper = e.container_dir(&id).join("upper");
        let daemons = fuse_daemons(&upper);
        assert_eq!(
            daemons.len(),
            usize::from(driver == "fuse"),
            "FUSE daemons for {}",
            upper.display()
        );
        // Without a delay the kill comes as soon as `run -d` returns; with one, it counts
        // from the writer's first fsync'ed sequence number.
        if let Some(delay) = delay {
            poll("the first log line", 60, || {
                std::fs::read(upper.join("w/log")).is_ok_and(|l| l.contains(&b'\n'))
            });
            std::thread::sleep(delay);
        }
        if kill != Kill::Supervisor {
            kill9(daemons[0]);
        }
        if kill != Kill::Daemon {
            kill9(st["supervisor"].as_i64().expect("the supervisor's pid") as i32);
        }
        (id, procs)
    };
    let cdir = e.container_dir(&id);
    let upper = cdir.join("upper");
    if kill != Kill::Daemon {
        // No strata command runs in between: the container must die with its supervisor.
        // Left may be the root's mount and its FUSE daemon, for reconcile to clean up. A
        // supervisor killed while starting may have left its mount helper running: it
        // finishes the mount on its own (the daemon then serves a live mount), so wait for
        // that to settle — a daemon with no live mount is still starting.
        let merged = cdir.join("merged");
        poll(
            "the container's processes to die with the supervisor",
            20,
            || {
                let daemons = fuse_daemons(&upper);
                procs.left().is_empty()
                    && procs_naming(&e.root()).iter().all(|p| daemons.contains(p))
                    && (daemons.is_empty() || !mounts_under(&merged).is_empty())
            },
        );
        // Whichever command comes first finds the stale state (mount, cgroup, "running")
        // and must cope with it.
        let args = first_cmd(e, first, &name);
        let out = e.strata(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "strata {first} as the first command after the crash failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = |ps: &str| ps.lines().find(|l| l.ends_with(&name)).map(str::to_string);
    // A container whose root daemon died fails its next write and exits; one whose
    // supervisor died while starting it never ran.
    poll("ps -a to show the container exited", 60, || {
        line(&e.ok(&["ps", "-a"])).is_some_and(|l| {
            l.contains("Exited (") || kill == Kill::Starting && l.contains("Created")
        })
    });
    let ps = line(&e.ok(&["ps", "-a"])).unwrap();
    if kill == Kill::Supervisor {
        assert!(ps.contains("Exited (255)"), "{ps}");
    }
    assert!(
        !e.ok(&["ps", "-q"]).contains(&id[..12]),
        "still listed as running"
    );
    assert_nothing_left(e, &id, &procs, "after the crash and ps");
    if driver == "fuse" {
        let lowers: Vec<String> = e
            .lowers(&id)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let out = e.strata(&[
            "fsck",
            upper.to_str().unwrap(),
            "--lowerdir",
            &lowers.join(":"),
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("clean"),
            "fsck after the crash: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The same check by the container's name: its upper over its own layers.
        let by_name = e.ok(&["fsck", &name]);
        assert_eq!(by_name, text, "fsck {name} and fsck of its upper differ");
    }
    let diff = e.ok(&["diff", &name]);
    assert!(
        early || diff.lines().any(|l| l == "C /big/blob") && diff.lines().any(|l| l == "A /w/log"),
        "diff after the crash: {diff}"
    );

    // Restart over the same upper, idle, and read the root back through it.
    std::fs::write(ctl.join("verify"), "").unwrap();
    e.ok(&["start", &name]);
    let st = e.state(&id);
    assert_eq!(st["status"], "running", "{st}");
    let init2 = st["pid"].as_i64().unwrap() as i32;
    let procs2 = Procs::of(&id, Some(init2));
    let m = verify_root(
        &PathBuf::from(format!("/proc/{init2}/root")),
        &format!("{name} restarted"),
        early,
    );
    e.ok(&["rm", "-f", &name]);
    assert!(!cdir.exists(), "{} left behind by rm", cdir.display());
    assert!(!e.ok(&["ps", "-a"]).contains(&name));
    assert_nothing_left(e, &id, &procs2, "after rm");
    let status = match ps.find("Exited (") {
        Some(i) => ps[i..].split(')').next().unwrap_or_default().to_string() + ")",
        None => "Created".to_string(),
    };
    format!("{run_d}{status}, {m} fsync'ed sequence numbers intact")
}

pub(crate) fn crash_loop(
    test: &'static str,
    driver: &str,
    kills: &[Kill],
    iters: usize,
    salt: u64,
) {
    let seed = seed(salt);
    eprintln!("{test}: seed {seed:#x}, {iters} iterations (STRATA_SEED={seed:#x} replays)");
    let replay = Replay {
        test,
        seed,
        iters,
        at: Cell::new(0),
        what: Default::default(),
    };
    let mut rng = Rng(seed);
    let e = Env::new();
    let start = rng.below(kills.len() as u64) as usize;
    for n in 0..iters {
        // Every target in turn from a random start, so each shows up even in short runs.
        let kill = kills[(start + n) % kills.len()];
        // One in five right away: a root daemon or supervisor dying while the container
        // starts up.
        let delay = match kill {
            // Long enough to reach every step of a start: the kernel's overlay mounts
            // faster than strata's daemon starts.
            Kill::Starting if driver == "overlay" => Some(Duration::from_millis(rng.below(20))),
            Kill::Starting => Some(Duration::from_millis(rng.below(60))),
            _ => (rng.below(5) != 0).then(|| Duration::from_millis(rng.below(2000))),
        };
        let first = match kill {
            Kill::Daemon => "ps",
            _ => FIRST[rng.below(FIRST.len() as u64) as usize],
        };
        replay.at.set(n);
        *replay.what.borrow_mut() =
            format!("{driver}, kill {kill:?}, delay {delay:?}, then strata {first}");
        let result = crash_once(&e, driver, n, kill, delay, first);
        let when = match (kill, delay) {
            (Kill::Starting, Some(d)) => format!("{} ms into run -d", d.as_millis()),
            (_, Some(d)) => format!("{} ms after the first fsync", d.as_millis()),
            (_, None) => "at once".into(),
        };
        eprintln!("{test}: iteration {n}: {driver}, kill {kill:?} {when}, then {first}: {result}");
    }
    let left: Vec<_> = std::fs::read_dir(e.root().join("containers"))
        .unwrap()
        .flatten()
        .map(|d| d.file_name())
        .collect();
    assert!(left.is_empty(), "left in containers/: {left:?}");
    let m = mounts_under(&e.root());
    assert!(m.is_empty(), "mounts left in the store: {m:?}");
    drop(e);
    drop(replay);
}
