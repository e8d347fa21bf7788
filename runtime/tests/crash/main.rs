//! Crashes of a running container (issue 8, BRIEF §7): SIGKILL of the container's
//! supervisor (while the container writes hard into its root, or while `run -d` is still
//! starting it), of its FUSE daemon (`--driver fuse`), or of both; then the first strata
//! command (ps, inspect, diff, export, logs or stop) copes with the stale state, `strata
//! ps -a` shows it exited (no hang), no mount, cgroup or process of it is left, `strata
//! fsck` of the upper is clean, `strata diff` works, `strata start` shows every fsync'ed
//! byte (files and block-delta writes into a lower file), and `strata rm` leaves nothing
//! behind. Repeated with seeded random delays and kill targets.
//!
//! `STRATA_CRASH_ITERS` sets the fuse iterations (default 8; overlay runs half as many);
//! `STRATA_SEED` replays a seed (the schedule of targets, delays and first commands; the
//! exact kill point also depends on timing). Rootful.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
use common::{install_busybox, strata_bin};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod cycle;
mod host;
mod replay;
use cycle::*;
use host::*;
use replay::*;

const BLOCK: usize = 4096;
/// The big file of the image's layer: on the fuse driver a write into it makes a block delta.
const BIG_BLOCKS: usize = 2048;

/// The container's command. With /ctl/verify present (the test creates it before
/// `strata start`) it only idles, so the restarted root can be read back. Otherwise, per
/// sequence number i: an fsync'ed file /w/d/fI, an fsync'ed 4 KiB write into block i of the
/// lower layer's /big/blob, then "i" appended (fsync'ed) to /w/log, so a logged i promises
/// both; then unsynced writes, a rename and a delete. `set -e`: once the root is gone
/// (its daemon killed) the first failing command ends the container.
const SCRIPT: &str = r#"set -e
if [ -e /ctl/verify ]; then exec sleep 100000; fi
mkdir -p /w/d /w/u
i=1
while :; do
  n=$(( (i * 7919) % 200000 + 1 ))
  yes "f$i-" | head -c $n | dd of=/w/d/f$i bs=65536 conv=fsync 2>/dev/null
  if [ $i -lt 2048 ]; then
    yes "b$i-" | head -c 4096 | dd of=/big/blob bs=4096 seek=$i count=1 iflag=fullblock conv=notrunc,fsync 2>/dev/null
  fi
  echo $i | dd of=/w/log oflag=append conv=notrunc,fsync 2>/dev/null
  yes "u$i-" | head -c $n > /w/u/f$i
  mv /w/u/f$i /w/u/g$i
  if [ $i -gt 3 ]; then rm /w/u/g$((i - 3)); fi
  i=$((i + 1))
done
"#;

/// A private store with the image `crashimg`: busybox and an 8 MiB /big/blob.
struct Env {
    dir: PathBuf,
}

/// Block `b` of /big/blob as the image has it.
fn lower_block(b: usize) -> Vec<u8> {
    repeat_to(format!("lower-{b}\n").as_bytes(), BLOCK)
}

/// `yes WORD | head -c len`.
fn yes(word: &str, len: usize) -> Vec<u8> {
    repeat_to(format!("{word}\n").as_bytes(), len)
}

fn repeat_to(unit: &[u8], len: usize) -> Vec<u8> {
    unit.iter().copied().cycle().take(len).collect()
}

impl Env {
    fn new() -> Env {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests run containers and need root"
        );
        let dir = common::fresh_dir("strata-crash");
        let rootfs = dir.join("rootfs");
        for d in ["bin", "etc", "tmp", "big"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        install_busybox(&rootfs.join("bin"));
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
        let blob: Vec<u8> = (0..BIG_BLOCKS).flat_map(lower_block).collect();
        std::fs::write(rootfs.join("big/blob"), blob).unwrap();
        let tar = dir.join("image.tar");
        common::tar_dir(&rootfs, &tar);
        std::fs::remove_dir_all(&rootfs).unwrap();
        let env = Env { dir };
        env.ok(&["import", tar.to_str().unwrap(), "crashimg"]);
        std::fs::remove_file(&tar).unwrap();
        env
    }

    fn root(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// Run strata; a hang (60 s) fails the test instead of blocking it.
    fn strata(&self, args: &[&str]) -> Output {
        let mut tries = 0;
        let child = loop {
            let r = Command::new(strata_bin())
                .arg("--root")
                .arg(self.root())
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            match r {
                Ok(c) => break c,
                // A cargo build elsewhere in the tree is replacing the binary.
                Err(e)
                    if tries < 100
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::ExecutableFileBusy
                        ) =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot run {}: {e}", strata_bin().display()),
            }
        };
        let pid = child.id() as i32;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                panic!(
                    "strata {args:?} hung for 60 s; the store's processes:\n{}",
                    self.diagnose()
                );
            }
        }
    }

    /// What the store's containers and processes are doing (for a hang).
    fn diagnose(&self) -> String {
        let mut out = String::new();
        for d in std::fs::read_dir(self.root().join("containers"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let st = std::fs::read_to_string(d.path().join("state.json")).unwrap_or_default();
            out.push_str(&format!(
                "{}: {}\n",
                d.path().display(),
                st.replace('\n', " ")
            ));
        }
        out.push_str(&format!("mounts: {:?}\n", mounts_under(&self.root())));
        for p in procs_naming(&self.root()) {
            let read = |f: &str| std::fs::read(format!("/proc/{p}/{f}")).unwrap_or_default();
            let stat = String::from_utf8_lossy(&read("stat")).into_owned();
            out.push_str(&format!(
                "{p} [{}] wchan {} {}\n  stack: {}\n",
                stat.split(' ').take(4).collect::<Vec<_>>().join(" "),
                String::from_utf8_lossy(&read("wchan")),
                String::from_utf8_lossy(&read("cmdline")).replace('\0', " "),
                String::from_utf8_lossy(&read("stack")).replace('\n', " | ")
            ));
        }
        out
    }

    /// Run and expect success; stdout.
    fn ok(&self, args: &[&str]) -> String {
        common::expect_ok(args, self.strata(args))
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.root().join("containers").join(id)
    }

    fn state(&self, id: &str) -> serde_json::Value {
        let p = self.container_dir(id).join("state.json");
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
    }

    /// The union's lower branches of a container, top first (as the runtime mounts them).
    fn lowers(&self, id: &str) -> Vec<PathBuf> {
        let p = self.container_dir(id).join("config.json");
        let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let mut out: Vec<PathBuf> = cfg["layers"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .map(|h| self.root().join("layers").join(h.as_str().unwrap()))
            .collect();
        out.push(self.container_dir(id).join("init"));
        out
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(out) = Command::new(strata_bin())
            .arg("--root")
            .arg(self.root())
            .args(["ps", "-a", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new(strata_bin())
                    .arg("--root")
                    .arg(self.root())
                    .args(["rm", "-f", id])
                    .output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn fuse_container_survives_killed_supervisor_and_daemon() {
    crash_loop(
        "fuse_container_survives_killed_supervisor_and_daemon",
        "fuse",
        &[Kill::Supervisor, Kill::Daemon, Kill::Both, Kill::Starting],
        iterations(),
        1,
    );
}

#[test]
fn overlay_container_survives_killed_supervisor() {
    crash_loop(
        "overlay_container_survives_killed_supervisor",
        "overlay",
        &[Kill::Supervisor, Kill::Starting],
        iterations().div_ceil(2),
        2,
    );
}
