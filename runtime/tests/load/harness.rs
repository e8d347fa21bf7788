//! The load run: the rootfs, the containers and the samples taken of them.

use super::*;

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    let mut s = String::new();
    for b in Sha256::digest(data) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The image's root: busybox, a lower tree per worker (4 directories of FILES files and a
/// sub/ each, a hard-link pair, a big file, a manifest of it all) and the workload.
pub(crate) fn make_rootfs(rootfs: &Path) {
    for d in ["bin", "etc", "tmp", "root", "work", "data"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    install_busybox(&rootfs.join("bin"));
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(rootfs.join("load.sh"), script()).unwrap();
    let data = rootfs.join("data");
    std::fs::write(data.join("LINE"), line()).unwrap();
    let big = line().repeat(BIG / 64);
    for w in 0..WORKERS {
        let mut manifest = String::new();
        let mut add = |rel: String, body: &[u8]| {
            let p = data.join(&rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, body).unwrap();
            let _ = writeln!(manifest, "{}  /data/{rel}", sha256_hex(body));
        };
        for d in 4 * w..4 * w + 4 {
            for f in 0..FILES {
                add(format!("d{d}/f{f:02}"), lower_file(d, f).as_bytes());
            }
            for s in 0..5 {
                add(
                    format!("d{d}/sub/s{s}"),
                    format!("sub d{d}/s{s}\n").as_bytes(),
                );
            }
        }
        add(
            format!("d{}/link1", 4 * w),
            format!("link w{w}\n").as_bytes(),
        );
        let manifest_with_link = {
            let d = data.join(format!("d{}", 4 * w));
            std::fs::hard_link(d.join("link1"), d.join("link2")).unwrap();
            let body = format!("link w{w}\n");
            format!(
                "{manifest}{}  /data/d{}/link2\n",
                sha256_hex(body.as_bytes()),
                4 * w
            )
        };
        std::fs::write(data.join(format!("big{w}")), &big).unwrap();
        std::fs::write(data.join(format!("MANIFEST.w{w}")), manifest_with_link).unwrap();
    }
    for a in 0..DEEP {
        for b in 0..DEEP {
            let d = rootfs.join(format!("deep/a{a}/b{b}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("f"), format!("deep /deep/a{a}/b{b}\n")).unwrap();
        }
    }
    let mut perm = std::fs::metadata(rootfs.join("tmp")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o1777);
    std::fs::set_permissions(rootfs.join("tmp"), perm).unwrap();
}

/// One measurement of a container's daemon.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    pub(crate) t: u64,
    pub(crate) rss_kib: u64,
    /// Peak RSS so far (VmHWM).
    pub(crate) hwm_kib: u64,
    pub(crate) fds: usize,
    pub(crate) threads: u64,
    pub(crate) nodes: Option<u64>,
}

/// One container of the load and what was measured of it.
pub(crate) struct Ctr {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) daemon: i32,
    pub(crate) samples: Vec<Sample>,
    /// Worker ("0", "1", "2", "r") → (last iteration seen, when it last moved).
    pub(crate) progress: BTreeMap<String, (u64, Instant)>,
    pub(crate) stats: Option<serde_json::Value>,
}

/// A private store with the load image, and the containers started on it.
pub(crate) struct Load {
    pub(crate) dir: PathBuf,
    pub(crate) boxes: Vec<Ctr>,
}

impl Load {
    pub(crate) fn new() -> Load {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the load test runs containers and needs root"
        );
        let dir = std::env::temp_dir().join(format!("strata-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        make_rootfs(&rootfs);
        let tar = dir.join("load.tar");
        common::tar_dir(&rootfs, &tar);
        let l = Load { dir, boxes: vec![] };
        l.ok(&["import", tar.to_str().unwrap(), "load"], 120);
        l
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.join("store")
    }

    pub(crate) fn cdir(&self, id: &str) -> PathBuf {
        self.root().join("containers").join(id)
    }

    /// strata under the fd limit NOFILE (inherited by supervisors, daemons and containers).
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(strata_bin());
        c.arg("--root").arg(self.root()).args(args);
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, || {
                nix::sys::resource::setrlimit(
                    nix::sys::resource::Resource::RLIMIT_NOFILE,
                    NOFILE,
                    NOFILE,
                )
                .map_err(std::io::Error::from)
            });
        }
        c
    }

    /// Run strata with a time limit: a hung command (a deadlocked daemon under it) fails
    /// the test with the daemons' stacks instead of hanging it.
    pub(crate) fn strata(&self, args: &[&str], limit_secs: u64) -> Output {
        timed(self.cmd(args), Duration::from_secs(limit_secs)).unwrap_or_else(|| {
            self.dump_all();
            panic!(
                "strata {args:?} did not finish within {limit_secs} s: stuck on a daemon? \
                 (its threads' kernel stacks are printed above)"
            )
        })
    }

    pub(crate) fn ok(&self, args: &[&str], limit_secs: u64) -> String {
        let out = self.strata(args, limit_secs);
        assert!(
            out.status.success(),
            "strata {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The container's output as text: its log is docker's json-file format, one JSON
    /// object (`log`, `stream`, `time`) per line of output.
    pub(crate) fn log(&self, b: &Ctr) -> String {
        let raw =
            std::fs::read_to_string(self.cdir(&b.id).join("container.log")).unwrap_or_default();
        raw.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["log"].as_str().map(str::to_string))
            .collect()
    }

    pub(crate) fn daemon_log(&self, b: &Ctr) -> String {
        std::fs::read_to_string(self.cdir(&b.id).join("work/strata.log")).unwrap_or_default()
    }

    /// Everything that tells where a container is stuck: its daemon's threads and its own
    /// processes, each with state, wait channel and kernel stack.
    pub(crate) fn dump(&self, b: &Ctr) -> String {
        let mut s = format!("==== {} ({}), daemon pid {} ====\n", b.name, b.id, b.daemon);
        s += &describe_threads(b.daemon);
        for pid in pids_in_cgroup(&b.id) {
            s += &describe_threads(pid);
        }
        let log = self.log(b);
        let tail: Vec<&str> = log.lines().rev().take(8).collect();
        let _ = writeln!(s, "-- container log (last lines, newest first):");
        for l in tail {
            let _ = writeln!(s, "   {l}");
        }
        let dlog = self.daemon_log(b);
        let tail: Vec<&str> = dlog.lines().rev().take(8).collect();
        let _ = writeln!(
            s,
            "-- daemon log work/strata.log (last lines, newest first):"
        );
        for l in tail {
            let _ = writeln!(s, "   {l}");
        }
        s
    }

    pub(crate) fn dump_all(&self) {
        for b in &self.boxes {
            eprintln!("{}", self.dump(b));
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // Kill what is still running, with time limits: a daemon may be stuck.
        let names: Vec<String> = self.boxes.iter().map(|b| b.name.clone()).collect();
        if !names.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(names.iter().map(String::as_str));
            let _ = timed(self.cmd(&args), Duration::from_secs(120));
        }
        for pid in pids_mentioning(&self.root()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for m in mounts_under(&self.root()) {
            let _ = nix::mount::umount2(Path::new(&m), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run `cmd` to completion within `limit` (None: killed when it took longer).
pub(crate) fn timed(mut cmd: Command, limit: Duration) -> Option<Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => Some(r.unwrap()),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            None
        }
    }
}
