//! Crash safety of native commit (issue 14): `strata commit` of a fuse container SIGKILLed at
//! seeded random moments (during the copy of its upper, the publish, the image and tag
//! writes). After each kill the store answers, the image is either absent or complete (it
//! runs with exactly what the container saw, and `fsck --image` is clean), the container's
//! upper is untouched (same `diff`, and a later commit of it is right), and once the images
//! are removed no layer or staging copy of the killed commits is left.
//!
//! `STRATA_CRASH_ITERS` sets the kills (default 8); `STRATA_SEED` replays a schedule. Rootful.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{check, install_busybox, strata_at, strata_bin};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Env {
    dir: PathBuf,
}

impl Env {
    fn strata(&self, args: &[&str]) -> Output {
        strata_at(&self.dir.join("store"), args)
    }
    fn ok(&self, args: &[&str]) -> String {
        check(&self.strata(args), &format!("strata {args:?}"))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.strata(&["rm", "-f", "c"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// splitmix64: the schedule of kill delays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

const SNAPSHOT: &str = "cd /t && find . | sort | while read f; do \
     if [ -d \"$f\" ]; then echo \"$f D $(stat -c %a \"$f\")\"; \
     else echo \"$f F $(stat -c '%a %h %s' \"$f\") $(sha256sum < \"$f\" | cut -c1-16)\"; fi; done";

/// Prints the replay line when the test fails.
struct Replay(u64);

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "replay with: STRATA_SEED={:#x} cargo test -p strata-runtime --test commit_crash -- --nocapture",
                self.0
            );
        }
    }
}

fn layer_names(e: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(e.dir.join("store/layers"))
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn commit_killed_at_random_moments_leaves_old_or_new_state() {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let seed = std::env::var("STRATA_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let _replay = Replay(seed);
    let mut rng = Rng(seed);
    let iters: usize = std::env::var("STRATA_CRASH_ITERS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(8);
    let dir = std::env::temp_dir().join(format!("strata-cc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rootfs = dir.join("rootfs");
    install_busybox(&rootfs.join("bin"));
    std::fs::create_dir_all(rootfs.join("t/d")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("t/d/f"), "lower\n").unwrap();
    std::fs::write(rootfs.join("t/big"), vec![7u8; 8 << 20]).unwrap();
    let tar = dir.join("base.tar");
    common::tar_dir(&rootfs, &tar);
    let e = Env { dir };
    e.ok(&["import", tar.to_str().unwrap(), "base"]);
    // Many entries, so that a commit lasts long enough to be killed in its middle.
    let script = format!(
        "set -e; mkdir -p /t/many; i=0; while [ $i -lt 1500 ]; do echo $i > /t/many/f$i; i=$((i+1)); done; \
         yes blk | head -c 4096 | dd of=/t/big bs=4096 seek=77 conv=notrunc 2>/dev/null; \
         mv /t/d /t/d2; chmod 600 /t/d2/f; {SNAPSHOT}"
    );
    let want = e.ok(&[
        "run", "--name", "c", "--driver", "fuse", "base", "sh", "-c", &script,
    ]);
    let diff = e.ok(&["diff", "c"]);
    let base_layers = layer_names(&e);
    // How long one whole commit takes here: the kills fall within it.
    let t = Instant::now();
    e.ok(&["commit", "c", "probe"]);
    let whole = t.elapsed().as_millis() as u64;
    e.ok(&["rmi", "probe"]);
    eprintln!("seed {seed:#x}: one commit takes {whole} ms, {iters} kills");

    for k in 0..iters {
        let img = format!("k{k}x");
        let delay = rng.below(whole + whole / 2 + 1);
        let mut child = Command::new(strata_bin())
            .arg("--root")
            .arg(e.dir.join("store"))
            .args(["commit", "c", &img])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let status = child.wait().unwrap();
        eprintln!("kill {k} after {delay} ms: {status}");
        let images = e.ok(&["images"]);
        if images.contains(&img) {
            let got = e.ok(&["run", "--rm", &img, "sh", "-c", SNAPSHOT]);
            assert_eq!(
                got, want,
                "image {img} of a killed commit (after {delay} ms)"
            );
            e.ok(&["fsck", "--image", &img]);
        }
        assert_eq!(
            e.ok(&["diff", "c"]),
            diff,
            "the container's upper after kill {k}"
        );
    }
    // The container still commits right, and once the images are gone nothing of the
    // killed commits is left in the store.
    e.ok(&["commit", "c", "final"]);
    // What was killed is the native path (the upper kept as it is, not expanded).
    let inspect: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "final"])).unwrap();
    assert_eq!(
        inspect[0]["GraphDriver"]["Data"]["Layers"][1]["Native"], true,
        "{inspect}"
    );
    assert_eq!(e.ok(&["run", "--rm", "final", "sh", "-c", SNAPSHOT]), want);
    let images = e.ok(&["images"]);
    for k in 0..iters {
        if images.contains(&format!("k{k}x")) {
            e.ok(&["rmi", &format!("k{k}x")]);
        }
    }
    e.ok(&["rmi", "final"]);
    assert_eq!(
        layer_names(&e),
        base_layers,
        "layers left by killed commits"
    );
    let tmp: Vec<_> = std::fs::read_dir(e.dir.join("store/tmp"))
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("native-"))
        .collect();
    assert!(tmp.is_empty(), "staging copies left: {tmp:?}");
}
