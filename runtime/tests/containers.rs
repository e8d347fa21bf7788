//! End-to-end tests: real containers from a busybox image (Debian's busybox-static), driven
//! through the strata binary (STRATA_BIN or <workspace>/target/debug/strata). Rootful.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{as_user, ensure_user, install_busybox, strata_bin};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A private store with a busybox image imported as `busybox`.
struct Env {
    dir: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Env {
    fn new() -> Env {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests run containers and need root"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("strata-rt-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        for d in ["bin", "etc", "tmp", "root", "home/bob"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        install_busybox(&rootfs.join("bin"));
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000:bob:/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\nbob:x:1000:\nwheel:x:10:bob\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("etc/keep"), "original\n").unwrap();
        std::fs::write(rootfs.join("etc/motd"), "motd text\n").unwrap();
        std::fs::write(rootfs.join("home/bob/.profile"), "export X=1\n").unwrap();
        let tar = dir.join("busybox.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let env = Env { dir };
        let out = env.strata(&[
            "import",
            tar.to_str().unwrap(),
            "busybox",
            "--change",
            r#"CMD ["/bin/sh"]"#,
        ]);
        assert!(
            out.status.success(),
            "import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        env
    }

    fn root(&self) -> PathBuf {
        self.dir.join("store")
    }

    fn strata(&self, args: &[&str]) -> Output {
        Command::new(strata_bin())
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Run and expect success; stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.strata(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        let out = self.strata(&a);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = self.strata(&["ps", "-a", "-q"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.strata(&["rm", "-f", id]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn poll(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn echo_and_exit_statuses() {
    let e = Env::new();
    assert_eq!(
        e.run(&["busybox", "echo", "hello"]),
        (0, "hello\n".into(), String::new())
    );
    assert_eq!(e.run(&["busybox", "sh", "-c", "exit 3"]).0, 3);
    assert_eq!(e.run(&["busybox", "sh", "-c", "kill -9 $$"]).0, 137);
    assert_eq!(e.run(&["busybox", "sh", "-c", "kill -TERM $$"]).0, 143);
    let (code, _, err) = e.run(&["busybox", "no-such-command"]);
    assert_eq!(code, 127);
    assert!(err.contains("executable file not found"), "{err}");
    // The image's CMD is used when none is given.
    let out = Command::new(strata_bin())
        .arg("--root")
        .arg(e.root())
        .args(["run", "--rm", "-i", "busybox"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(b"echo from-stdin; exit 5\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-stdin\n");
}

#[test]
fn env_workdir_user_hostname_pid1() {
    let e = Env::new();
    let (code, out, err) = e.run(&[
        "-e",
        "A=1",
        "-w",
        "/work/dir",
        "-u",
        "bob",
        "-h",
        "box",
        "busybox",
        "sh",
        "-c",
        "echo $A $PWD $(id -u) $(id -g) $(id -G) $(hostname) $HOME $$; echo $PATH",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1 /work/dir 1000 1000 1000 10 box /home/bob 2");
    assert_eq!(
        lines[1],
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    let (_, out, _) = e.run(&[
        "-u",
        "4242:7",
        "busybox",
        "sh",
        "-c",
        "echo $(id -u):$(id -g)",
    ]);
    assert_eq!(out, "4242:7\n");
    let (code, _, err) = e.run(&["-u", "nobody-here", "busybox", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("unable to find user"), "{err}");
}

#[test]
fn proc_masks_caps_and_isolation() {
    let e = Env::new();
    let script = "grep CapBnd /proc/self/status; grep NoNewPrivs /proc/self/status; \
                  if echo x > /proc/sys/kernel/domainname; then echo proc-sys-writable; fi; \
                  wc -c < /proc/timer_list 2>/dev/null || echo 0; ls /proc/acpi 2>/dev/null | wc -l; \
                  ls /dev | tr '\\n' ' '; echo; \
                  if touch /sys/x 2>/dev/null; then echo sys-writable; fi; \
                  ls / | tr '\\n' ' '";
    let (code, out, err) = e.run(&["busybox", "sh", "-c", script]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    // Docker's set; CAP_MKNOD only where a v1 device cgroup refuses to open what is made.
    let bounding = match Path::new("/sys/fs/cgroup/devices/cgroup.procs").exists() {
        true => "00000000a80425fb",
        false => "00000000a00425fb",
    };
    assert_eq!(lines[0], format!("CapBnd:\t{bounding}"));
    assert_eq!(lines[1], "NoNewPrivs:\t1");
    assert!(!out.contains("writable"), "{out}");
    assert_eq!(lines[2].trim(), "0", "/proc/timer_list must read empty");
    assert_eq!(lines[3].trim(), "0", "/proc/acpi must be empty");
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "mqueue",
    ] {
        assert!(
            lines[4].split(' ').any(|x| x == d),
            "/dev lacks {d}: {}",
            lines[4]
        );
    }
    // The host's files are not visible: only the image's top-level directories.
    assert!(
        !lines[5].contains("work") && !lines[5].contains("var"),
        "{}",
        lines[5]
    );
}

#[test]
fn volumes_ro_and_rw() {
    let e = Env::new();
    let vol = e.dir.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("f"), "hostfile\n").unwrap();
    let ro = format!("{}:/data:ro", vol.display());
    let (code, out, _) = e.run(&[
        "-v",
        &ro,
        "busybox",
        "sh",
        "-c",
        "cat /data/f; echo x > /data/g",
    ]);
    assert_ne!(code, 0);
    assert_eq!(out, "hostfile\n");
    assert!(!vol.join("g").exists());
    let rw = format!("{}:/data", vol.display());
    let (code, _, err) = e.run(&["-v", &rw, "busybox", "sh", "-c", "echo y > /data/g"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(vol.join("g")).unwrap(), "y\n");
}

#[test]
fn net_none_has_only_loopback() {
    let e = Env::new();
    let (code, out, err) = e.run(&["--net", "none", "busybox", "ls", "/sys/class/net"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "lo\n");
}

#[test]
fn pids_limit_bounds_a_fork_bomb() {
    let e = Env::new();
    let (code, _, err) = e.run(&[
        "--pids-limit",
        "16",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 64 ]; do sleep 60 & i=$((i+1)); done",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("can't fork"), "{err}");
}

fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    ["memory", "pids", "cpu", "devices"]
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c).join("strata").join(id))
        .chain([Path::new("/sys/fs/cgroup/strata").join(id)])
        .collect()
}

#[test]
fn detached_logs_stop_start_kill_rm_and_cgroups() {
    let e = Env::new();
    let script = "echo started; trap 'echo got TERM; exit 7' TERM; while true; do sleep 0.1; done";
    let id = e.ok(&[
        "run", "-d", "--name", "web", "--memory", "64m", "--cpus", "0.5", "busybox", "sh", "-c",
        script,
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64);
    let limit = ["/sys/fs/cgroup/memory/strata", "/sys/fs/cgroup/strata"]
        .iter()
        .find_map(|d| {
            let d = Path::new(d).join(&id);
            std::fs::read_to_string(d.join("memory.limit_in_bytes"))
                .or_else(|_| std::fs::read_to_string(d.join("memory.max")))
                .ok()
        })
        .expect("the container's memory cgroup");
    assert_eq!(limit.trim(), "67108864");
    poll("the log", || e.ok(&["logs", "web"]).contains("started"));
    assert!(e.ok(&["ps"]).contains("web"));
    assert_eq!(e.ok(&["exec", "web", "hostname"]).trim(), &id[..12]);
    assert_eq!(
        e.strata(&["exec", "web", "sh", "-c", "exit 4"])
            .status
            .code(),
        Some(4)
    );
    e.ok(&["stop", "web"]);
    assert!(e.ok(&["logs", "web"]).contains("got TERM"));
    let ps = e.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (7)"), "{ps}");
    assert!(!e.ok(&["ps"]).contains("web"));
    for d in cgroup_dirs(&id) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    e.ok(&["start", "web"]);
    assert!(e.ok(&["ps"]).contains("web"));
    e.ok(&["kill", "web"]);
    poll("the exit", || e.ok(&["ps", "-a"]).contains("Exited (137)"));
    let out = e.strata(&["run", "--name", "web", "busybox", "true"]);
    assert!(!out.status.success(), "duplicate names must be refused");
    e.ok(&["rm", "web"]);
    assert!(!e.ok(&["ps", "-a"]).contains("web"));
    assert!(!e.root().join("containers").join(&id).exists());
}

/// `logs -f` prints what the container writes while it runs and returns once it exits,
/// with the lines written last.
#[test]
fn logs_follow_until_exit() {
    let e = Env::new();
    let script = "echo one; i=0; while [ ! -e /tmp/go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; echo two";
    e.ok(&["run", "-d", "--name", "f", "busybox", "sh", "-c", script]);
    poll("the first line", || e.ok(&["logs", "f"]).contains("one"));
    let mut follow = Command::new(strata_bin())
        .arg("--root")
        .arg(e.root())
        .args(["logs", "-f", "f"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).map(|_| out)
    });
    // Still following: the container has not exited.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        follow.try_wait().unwrap().is_none(),
        "logs -f returned early"
    );
    e.ok(&["exec", "f", "touch", "/tmp/go"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while follow.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = follow.kill();
            panic!("logs -f did not return after the container exited");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(follow.wait().unwrap().success());
    assert_eq!(reader.join().unwrap().unwrap(), "one\ntwo\n");
}

#[test]
fn rm_force_kills_a_running_container() {
    let e = Env::new();
    let id = e.ok(&["run", "-d", "busybox", "sleep", "1000"]);
    let id = id.trim();
    let out = e.strata(&["rm", id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rm -f"));
    e.ok(&["rm", "-f", id]);
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
    for d in cgroup_dirs(id) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn images_tag_history_inspect_rmi() {
    let e = Env::new();
    e.ok(&["tag", "busybox", "bb:v2"]);
    let images = e.ok(&["images"]);
    assert!(
        images.contains("busybox") && images.contains("v2"),
        "{images}"
    );
    assert!(e.ok(&["history", "bb:v2"]).contains("strata import"));
    let inspect: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "busybox"])).unwrap();
    assert_eq!(inspect[0]["Config"]["Cmd"][0], "/bin/sh");
    assert_eq!(e.ok(&["rmi", "bb:v2"]).trim(), "Untagged: bb:v2");
    assert!(e.ok(&["rmi", "busybox"]).contains("Deleted: sha256:"));
    assert_eq!(
        std::fs::read_dir(e.root().join("layers")).unwrap().count(),
        0,
        "layers must be collected"
    );
    let out = e.strata(&["run", "--rm", "busybox", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such image"));
}

/// A tar holding raw (unvalidated) entries, as an attacker would write it.
fn hostile_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, link) in entries {
        let mut h = tar::Header::new_old();
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        if !link.is_empty() {
            let l = &mut h.as_old_mut().linkname;
            l[..link.len()].copy_from_slice(link.as_bytes());
        }
        let data: &[u8] = if *kind == tar::EntryType::Regular {
            b"pwned\n"
        } else {
            b""
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn store_snapshot(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in ["layers", "images", "tmp"] {
        if let Ok(rd) = std::fs::read_dir(root.join(d)) {
            for e in rd.flatten() {
                out.push(format!("{d}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn hostile_tars_are_refused_and_the_store_is_unchanged() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let e = Env::new();
    let victim = e.dir.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            hostile_tar(&[("../../../../escape", Regular, "")]),
        ),
        ("absolute", hostile_tar(&[("/tmp/escape-abs", Regular, "")])),
        (
            "symlink-write-through",
            hostile_tar(&[
                ("d", Directory, ""),
                ("d/l", Symlink, victim.to_str().unwrap()),
                ("d/l/file", Regular, ""),
            ]),
        ),
        (
            "hardlink-outside",
            hostile_tar(&[("h", Link, "../../../etc/passwd")]),
        ),
        (
            "hardlink-absolute",
            hostile_tar(&[("h", Link, "/etc/passwd")]),
        ),
    ];
    let before = store_snapshot(&e.root());
    for (what, data) in cases {
        let p = e.dir.join(format!("{what}.tar"));
        std::fs::write(&p, data).unwrap();
        let out = e.strata(&["import", p.to_str().unwrap(), "evil"]);
        assert!(!out.status.success(), "{what}: hostile tar imported");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refusing"), "{what}: {err}");
        assert_eq!(
            store_snapshot(&e.root()),
            before,
            "{what}: the store changed"
        );
    }
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    assert!(!Path::new("/tmp/escape-abs").exists());
    assert!(!e.ok(&["images"]).contains("evil"));
}

#[test]
fn fuse_driver_runs_a_container() {
    let e = Env::new();
    let (code, out, err) = e.run(&[
        "--driver",
        "fuse",
        "busybox",
        "sh",
        "-c",
        "echo hi > /tmp/x; cat /tmp/x /etc/keep",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hi\noriginal\n");
}

#[test]
fn info_names_the_driver_and_why() {
    let e = Env::new();
    let out = e.ok(&["info"]);
    assert!(out.contains("Storage driver: "), "{out}");
    assert!(out.contains("Driver reason: "), "{out}");
    assert!(out.contains(&e.root().display().to_string()));
}

/// Names and contents of the regular files in a tar.
fn tar_files(data: &[u8]) -> std::collections::BTreeMap<String, String> {
    use std::io::Read;
    let mut out = std::collections::BTreeMap::new();
    let mut a = tar::Archive::new(data);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut body = String::new();
        if e.header().entry_type() == tar::EntryType::Regular {
            e.read_to_string(&mut body).unwrap_or_default();
        }
        out.insert(name.trim_end_matches('/').to_string(), body);
    }
    out
}

const CHANGES: &str = "echo new > /tmp/new; echo changed >> /etc/keep; rm /etc/group; \
                       chmod 600 /etc/motd; mv /home /home2";

#[test]
fn diff_commit_export_round_trip_on_both_drivers() {
    let e = Env::new();
    for driver in ["overlay", "fuse"] {
        let name = format!("c-{driver}");
        let (code, _, err) = {
            let out = e.strata(&[
                "run", "--name", &name, "--driver", driver, "busybox", "sh", "-c", CHANGES,
            ]);
            (
                out.status.code(),
                String::new(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        assert_eq!(code, Some(0), "{driver}: {err}");
        let diff = e.ok(&["diff", &name]);
        assert_eq!(
            diff,
            "C /etc\nD /etc/group\nC /etc/keep\nC /etc/motd\nD /home\nA /home2\nA /home2/bob\n\
             A /home2/bob/.profile\nC /tmp\nA /tmp/new\n",
            "{driver}"
        );
        let img = format!("img-{driver}:v1");
        let id = e.ok(&[
            "commit",
            "-m",
            "round trip",
            "-c",
            r#"CMD ["/bin/cat", "/tmp/new"]"#,
            &name,
            &img,
        ]);
        assert!(id.starts_with("sha256:"), "{id}");
        assert!(e.ok(&["history", &img]).contains("round trip"));
        let inspect: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", &img])).unwrap();
        assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);
        // The image's CMD came from -c; the changes are all there, on either driver.
        for run_driver in ["overlay", "fuse"] {
            assert_eq!(
                e.run(&["--driver", run_driver, &img]),
                (0, "new\n".into(), String::new())
            );
            let (code, out, err) = e.run(&[
                "--driver",
                run_driver,
                &img,
                "sh",
                "-c",
                "cat /etc/keep /etc/motd /home2/bob/.profile; stat -c %a /etc/motd; \
                 ls /etc/group /home 2>&1 | wc -l; ls -A /home2/bob",
            ]);
            assert_eq!(code, 0, "{err}");
            assert_eq!(
                out, "original\nchanged\nmotd text\nexport X=1\n600\n2\n.profile\n",
                "committed on {driver}, run on {run_driver}"
            );
        }
        // export: the merged tree, with the container stopped (a read-only mount).
        let tar = e.dir.join(format!("{driver}.tar"));
        e.ok(&["export", "-o", tar.to_str().unwrap(), &name]);
        let files = tar_files(&std::fs::read(&tar).unwrap());
        assert_eq!(files["etc/keep"], "original\nchanged\n");
        assert_eq!(files["etc/motd"], "motd text\n");
        assert_eq!(files["home2/bob/.profile"], "export X=1\n");
        assert!(files.contains_key("bin/busybox"));
        assert!(!files.contains_key("etc/group") && !files.contains_key("home"));
        assert!(!files.keys().any(|k| k.contains(".wh.")), "{files:?}");
        // To stdout too, identical.
        let out = e.strata(&["export", &name]);
        assert!(out.status.success());
        assert_eq!(tar_files(&out.stdout), files);
    }
    // No mounts are left behind by the read-only views.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(e.root().to_str().unwrap()), "{mounts}");
}

#[test]
fn commit_and_export_a_running_container_and_an_unchanged_one() {
    let e = Env::new();
    let id = e.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "--driver",
        "fuse",
        "busybox",
        "sh",
        "-c",
        "chmod 640 /etc/motd; echo up > /tmp/ready; exec sleep 1000",
    ]);
    poll("the container", || {
        e.ok(&["diff", "live"]).contains("/tmp/ready")
    });
    e.ok(&["commit", "live", "snap"]);
    let (code, out, err) = e.run(&[
        "snap",
        "sh",
        "-c",
        "cat /tmp/ready /etc/motd; stat -c %a /etc/motd",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "up\nmotd text\n640\n");
    let out = e.strata(&["export", "live"]);
    assert!(out.status.success());
    assert_eq!(tar_files(&out.stdout)["tmp/ready"], "up\n");
    e.ok(&["rm", "-f", id.trim()]);
    // A container that changed nothing commits to an empty layer, as docker does.
    e.ok(&["run", "--name", "idle", "busybox", "true"]);
    assert_eq!(e.ok(&["diff", "idle"]), "");
    e.ok(&["commit", "idle", "same"]);
    assert_eq!(e.run(&["same", "cat", "/etc/keep"]).1, "original\n");
    let out = e.strata(&["commit", "idle", "Bad:Name"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid"));
}

#[test]
fn rootless_runs_as_an_unprivileged_user() {
    let e = Env::new();
    let user = "strata-rootless";
    ensure_user(user);
    // As distributions ship it.
    std::fs::set_permissions(
        "/dev/fuse",
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
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

/// The trace's JSON lines.
fn trace_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn run_trace_records_the_containers_reads_and_writes() {
    let e = Env::new();
    let trace = e.dir.join("ops.jsonl");
    let t = trace.to_str().unwrap();
    // auto picks strata's union when tracing.
    let (code, out, err) = e.run(&[
        "--trace",
        t,
        "busybox",
        "sh",
        "-c",
        "cat /etc/keep; echo hi > /tmp/out",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "original\n");
    // Complete when run returns: the last line is the end line.
    let lines = trace_lines(&trace);
    assert_eq!(lines.last().unwrap()["op"], "trace_end", "{lines:?}");
    assert!(
        lines.iter().any(|l| l["op"] == "read"
            && l["path"] == "/etc/keep"
            && l["branch"] == "lower 0"
            && l["size"] == 9),
        "no read of /etc/keep from the image: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l["op"] == "write"
            && l["path"] == "/tmp/out"
            && l["branch"] == "upper"
            && l["size"] == 3),
        "no write of /tmp/out into the upper: {lines:?}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&e.ok(&["trace", "summary", "--json", t])).unwrap();
    assert_eq!(summary["complete"], true);
    assert!(summary["groups"]["read"]["count"].as_u64().unwrap() >= 1);
    assert!(summary["groups"]["write"]["count"].as_u64().unwrap() >= 1);
    let text = e.ok(&["trace", "summary", t]);
    for op in ["read", "write"] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{op} "))),
            "{text}"
        );
    }
    // Filters: only these ops, only these paths.
    let (code, _, err) = e.run(&[
        "--driver",
        "fuse",
        "--trace",
        t,
        "--trace-ops",
        "read,write",
        "--trace-path",
        "/tmp/**",
        "busybox",
        "sh",
        "-c",
        "cat /etc/keep >/dev/null; echo hi > /tmp/out; cat /tmp/out >/dev/null",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines = trace_lines(&trace);
    let ops: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["op"] != "trace_end")
        .map(|l| (l["op"].as_str().unwrap(), l["path"].as_str().unwrap()))
        .collect();
    assert_eq!(ops, [("write", "/tmp/out"), ("read", "/tmp/out")]);
    // The kernel's overlayfs cannot be traced: refused in one line.
    let (code, _, err) = e.run(&["--driver", "overlay", "--trace", t, "busybox", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("--trace needs strata's FUSE union"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn exec_tty_is_a_pty_of_the_containers_own_devpts() {
    let e = Env::new();
    let id = e.ok(&["run", "-d", "--name", "tt", "busybox", "sleep", "1000"]);
    let out = e.ok(&["exec", "-t", "tt", "sh", "-c", "tty; ls -1 /dev/pts"]);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let n = lines[0]
        .strip_prefix("/dev/pts/")
        .unwrap_or_else(|| panic!("tty printed {out:?}"));
    assert!(
        lines[1..].contains(&n),
        "not in the container's devpts: {out:?}"
    );
    // The terminal belongs to the user the process runs as.
    let out = e.ok(&[
        "exec",
        "-t",
        "-u",
        "1000",
        "tt",
        "sh",
        "-c",
        "stat -c %u $(tty)",
    ]);
    assert_eq!(out.trim(), "1000");
    let out = e.strata(&["exec", "tt", "tty"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "not a tty");
    e.ok(&["rm", "-f", id.trim()]);
    // run -t too: the container's first pty, also its /dev/console, owned by the -u user.
    let (code, out, err) = e.run(&[
        "-t",
        "-u",
        "1000",
        "busybox",
        "sh",
        "-c",
        "tty; stat -c '%u %t:%T' $(tty) /dev/console",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "/dev/pts/0\r\n1000 88:0\r\n1000 88:0\r\n");
}

#[test]
fn etc_hostname_hosts_and_resolv_conf() {
    let e = Env::new();
    let host = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let script = "cat /etc/hostname /etc/resolv.conf /etc/hosts; \
                  if echo x >> /etc/hosts 2>/dev/null; then echo hosts-writable; fi; \
                  if echo x >> /etc/resolv.conf 2>/dev/null; then echo resolv-writable; fi";
    for driver in ["overlay", "fuse"] {
        // --net host: the host's files, read-only.
        let (code, out, err) = e.run(&[
            "--driver", driver, "--net", "host", "-h", "box", "busybox", "sh", "-c", script,
        ]);
        assert_eq!(code, 0, "{driver}: {err}");
        assert_eq!(
            out,
            format!("box\n{}{}", host("/etc/resolv.conf"), host("/etc/hosts")),
            "{driver}"
        );
        // --net none: localhost and the container's name.
        let (code, out, err) = e.run(&[
            "--driver",
            driver,
            "--net",
            "none",
            "-h",
            "box",
            "busybox",
            "sh",
            "-c",
            "cat /etc/hostname /etc/hosts; ping -c1 -W5 box >/dev/null && echo box-resolves",
        ]);
        assert_eq!(code, 0, "{driver}: {err}");
        assert_eq!(
            out,
            "box\n127.0.0.1\tlocalhost box\n::1\tlocalhost ip6-localhost ip6-loopback box\nbox-resolves\n",
            "{driver}"
        );
        // The mount points are not the container's changes, and not committed.
        let name = format!("quiet-{driver}");
        e.ok(&[
            "run", "--name", &name, "--driver", driver, "busybox", "true",
        ]);
        assert_eq!(e.ok(&["diff", &name]), "", "{driver}");
        let img = format!("quiet-{driver}");
        e.ok(&["commit", &name, &img]);
        let (_, out, _) = e.run(&["--net", "host", &img, "sh", "-c", "cat /etc/hosts"]);
        assert_eq!(out, host("/etc/hosts"));
        e.ok(&["rm", &name]);
    }
}

#[test]
fn init_is_pid_1_and_reaps_orphans() {
    let e = Env::new();
    // PID 1 is strata's init; the command is its child.
    let (code, out, err) = e.run(&[
        "busybox",
        "sh",
        "-c",
        "cat /proc/1/comm; echo $$ $PPID; cat /proc/$$/comm; true",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "strata\n2 1\nsh\n");
    // Orphans (double-forked children) are reparented to init, which must reap them when
    // they exit: poll inside until no sleep is left at all, then count zombies.
    let script = "for i in 1 2 3 4 5; do (sleep 0.2 &); done; \
                  n=0; while ps -o comm | grep -q sleep && [ $n -lt 300 ]; do sleep 0.05; n=$((n+1)); done; \
                  ps -o stat,comm | grep -c '^ *Z'";
    let (_, out, err) = e.run(&["busybox", "sh", "-c", script]);
    assert_eq!(out.trim(), "0", "zombies left: {err}");
}

#[test]
fn memory_limit_kills_a_hog() {
    let e = Env::new();
    // dd's 200 MiB buffer cannot fit in 32 MiB: the OOM killer ends it (SIGKILL).
    let (code, _, err) = e.run(&[
        "--memory",
        "32m",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=200M",
        "count=1",
    ]);
    assert_eq!(code, 137, "{err}");
    // Without the limit it runs.
    let (code, _, err) = e.run(&[
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=200M",
        "count=1",
    ]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn host_files_outside_the_root_are_invisible() {
    let e = Env::new();
    let canary = e.dir.join("canary-host-only");
    std::fs::write(&canary, "secret\n").unwrap();
    let c = canary.to_str().unwrap();
    let dir = e.dir.to_str().unwrap();
    for driver in ["overlay", "fuse"] {
        let script = format!(
            "ls {c} {dir} 2>/dev/null && echo listed; cat {c} 2>/dev/null && echo read; \
             cat /../../..{c} /proc/1/root{c} /proc/self/root{c} 2>/dev/null && echo read-via-path; \
             find / -xdev -name canary-host-only 2>/dev/null; echo done"
        );
        let (code, out, err) = e.run(&["--driver", driver, "busybox", "sh", "-c", &script]);
        assert_eq!(code, 0, "{driver}: {err}");
        assert_eq!(out, "done\n", "{driver}: the host's file is visible");
    }
}

#[test]
fn parallel_runs_of_the_same_image_on_both_drivers() {
    let e = Env::new();
    for driver in ["overlay", "fuse"] {
        let results: Vec<(usize, (i32, String, String))> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let e = &e;
                    s.spawn(move || {
                        let script = format!("echo run-{i} > /tmp/me; cat /tmp/me /etc/keep");
                        (
                            i,
                            e.run(&["--driver", driver, "busybox", "sh", "-c", &script]),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, (code, out, err)) in results {
            assert_eq!(code, 0, "{driver} run {i}: {err}");
            assert_eq!(out, format!("run-{i}\noriginal\n"), "{driver} run {i}");
        }
    }
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "", "--rm left containers behind");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(e.root().to_str().unwrap()), "{mounts}");
}

/// `-o` naming a device or a pipe writes into it: renaming a finished file over it (how
/// regular files are written) turned `strata export -o /dev/null` into a regular /dev/null.
/// A fifo stands in for the device here, so a regression cannot break the host.
#[test]
fn export_and_save_write_into_a_fifo_in_place() {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    let e = Env::new();
    e.ok(&["run", "--name", "c", "busybox", "true"]);
    let fifo = e.dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for args in [
        ["export", "-o", fifo.to_str().unwrap(), "c"],
        ["save", "-o", fifo.to_str().unwrap(), "busybox"],
    ] {
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let mut data = Vec::new();
                std::fs::File::open(&fifo)
                    .unwrap()
                    .read_to_end(&mut data)
                    .unwrap();
                data
            })
        };
        e.ok(&args);
        // Before joining: a replaced fifo would leave the reader waiting for a writer.
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "{args:?} replaced the fifo: {kind:?}");
        let data = reader.join().unwrap();
        assert!(
            !tar_files(&data).is_empty(),
            "{args:?} wrote no tar into the fifo"
        );
    }
    let left: Vec<_> = std::fs::read_dir(&e.dir)
        .unwrap()
        .flatten()
        .map(|d| d.file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn fsck_by_container_name() {
    let e = Env::new();
    let id = e.ok(&[
        "run", "-d", "--name", "fk", "--driver", "fuse", "busybox", "sleep", "1000",
    ]);
    let id = id.trim();
    let upper = e.root().join("containers").join(id).join("upper");
    // Read-only checks are fine while it runs; the report names the container's upper.
    let out = e.ok(&["fsck", "fk"]);
    assert_eq!(out, format!("{}: clean (0 repaired)\n", upper.display()));
    let out = e.strata(&["fsck", "--repair", "fk"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "repair of a running container");
    assert!(
        err.contains("is running") && err.contains("strata stop fk"),
        "{err}"
    );
    let out = e.strata(&["fsck", "fk", "--lowerdir", "/tmp"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("names a container"));
    let out = e.strata(&["fsck", "no-such-box"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such container"));
    e.ok(&["stop", "-t", "1", "fk"]);
    assert_eq!(
        e.ok(&["fsck", "--repair", id]),
        format!("{}: clean (0 repaired)\n", upper.display())
    );
    e.ok(&["rm", "fk"]);
}
