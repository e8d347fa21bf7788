//! Load (issue 8): 20 containers on one image, each on its own FUSE daemon (`--driver fuse`),
//! writing, renaming and deleting in parallel for `STRATA_LOAD_SECS` seconds (default 120;
//! soak with e.g. `STRATA_LOAD_SECS=600`). Rootful. Everything runs under an fd limit of 1024.
//!
//! Every container runs `/load.sh` (below): three workers on disjoint names plus a reader, so
//! every check inside is exact and any corruption, unexpected errno or lost write prints
//! `LOADFAIL`. The reader walks 1,640 directories, more than the daemon's dirfd cache holds.
//! From the host, every 5 s: each daemon's RSS and open fds, `strata fs stats` (nodes, errnos:
//! only ENOENT, ENODATA, EEXIST allowed), and each worker's progress line in the container
//! log. A worker that stops advancing for two minutes is reported as a deadlock with the
//! kernel stacks of the daemon's threads and the container's processes. At the end:
//! `strata whence` on the big files (deltas, one compacted), clean stops with status 0,
//! `strata diff`, a verification pass after a remount (a fresh daemon), `strata rm`, and no
//! mount, daemon or cgroup left.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
use common::{install_busybox, strata_bin};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod harness;
mod host;
mod script;
use harness::*;
use host::*;
use script::*;

/// Containers (STRATA_LOAD_CONTAINERS overrides it, to debug the workload on one).
const CONTAINERS: usize = 20;
/// Writers per container (each owns 4 lower directories and a big lower file); one reader more.
const WORKERS: usize = 3;
/// Files per lower directory.
const FILES: usize = 40;
/// /deep holds DEEP x DEEP directories (a file in each): more than the daemon's dirfd cache
/// holds under an fd limit of 1024, so the reader's walks make it evict.
const DEEP: usize = 40;
/// The containers (and so their daemons) run under this fd limit, soft and hard: a common
/// default, and low enough that a cache sized past it would show (EMFILE).
const NOFILE: u64 = 1024;
/// Size of each worker's big lower file: over the 1 MiB delta threshold, so its small writes
/// become block-level deltas.
const BIG: usize = 2 << 20;
/// The only errors the daemons may answer: names that are not there (the reader races the
/// workers; lookups of new names), xattrs that are not set, names that already exist.
const EXPECTED_ERRNOS: [&str; 3] = ["ENOENT", "ENODATA", "EEXIST"];
const SAMPLE: Duration = Duration::from_secs(5);
/// A worker whose progress counter has not moved for this long is stuck: every iteration is
/// a few dozen short commands, so even a starved one on 2 shared cores advances within it.
const STALL: Duration = Duration::from_secs(120);
/// Slack on the fd count over its warm-up maximum: the container's own open files come and
/// go (four shells, a command each, a few fds each).
const FD_SLACK: usize = 32;
/// Hard cap on a daemon's RSS. What it keeps is bounded: the dirfd LRU (4096 O_PATH fds and
/// their paths, < 1 MiB), the node table (only inodes the kernel still references: here the
/// ~600 live files of a container), fuser's per-thread request buffers (a few MiB), the code
/// of a debug build (~15 MiB resident).
const RSS_CAP_KIB: u64 = 64 << 10;
/// Growth allowed after the warm-up: malloc arenas of the request threads settle late.
const RSS_SLACK_KIB: u64 = 16 << 10;

#[test]
fn twenty_containers_write_rename_and_delete_for_minutes() {
    let secs: u64 = std::env::var("STRATA_LOAD_SECS")
        .ok()
        .map(|s| s.parse().expect("STRATA_LOAD_SECS: a number of seconds"))
        .unwrap_or(120);
    // The fd and RSS baselines are what the daemons reach once every path of the workload
    // was visited (each slot of a worker is used every 8 iterations).
    let warm = (secs / 4).clamp(20, 60);
    let containers: usize = std::env::var("STRATA_LOAD_CONTAINERS")
        .ok()
        .map(|s| s.parse().expect("STRATA_LOAD_CONTAINERS: a number"))
        .unwrap_or(CONTAINERS);
    let mut l = Load::new();
    let secs_s = secs.to_string();
    let workers_s = WORKERS.to_string();
    for n in 0..containers {
        let name = format!("load{n}");
        let id = l.ok(
            &[
                "run", "-d", "--name", &name, "--driver", "fuse", "load", "sh", "/load.sh",
                &secs_s, &workers_s,
            ],
            120,
        );
        let id = id.trim().to_string();
        let merged = l.cdir(&id).join("merged");
        let daemon = daemon_of(&merged)
            .unwrap_or_else(|| panic!("no FUSE daemon serves {} for {name}", merged.display()));
        l.boxes.push(Ctr {
            name,
            id,
            daemon,
            samples: vec![],
            progress: BTreeMap::new(),
            stats: None,
        });
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut next = start;
    loop {
        next += SAMPLE;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        let t = now.duration_since(start).as_secs();
        for i in 0..l.boxes.len() {
            let log = l.log(&l.boxes[i]);
            let failed = progress(&mut l.boxes[i], &log, now);
            let b = &l.boxes[i];
            let alive = std::fs::metadata(format!("/proc/{}", b.daemon)).is_ok();
            if let Some(f) = failed {
                panic!(
                    "{} reported a failure after {t} s: {f}\n{}",
                    b.name,
                    l.dump(b)
                );
            }
            if !alive {
                panic!(
                    "the FUSE daemon of {} (pid {}) is gone after {t} s: it crashed? its log \
                     (work/strata.log):\n{}",
                    b.name,
                    b.daemon,
                    l.daemon_log(b)
                );
            }
            let mut sample = Sample {
                t,
                rss_kib: status_field(b.daemon, "VmRSS:").unwrap_or(0),
                hwm_kib: status_field(b.daemon, "VmHWM:").unwrap_or(0),
                fds: fd_count(b.daemon).unwrap_or(0),
                threads: status_field(b.daemon, "Threads:").unwrap_or(0),
                nodes: None,
            };
            let merged = l.cdir(&b.id).join("merged");
            let stats = timed(
                l.cmd(&["fs", "stats", "--json", merged.to_str().unwrap()]),
                Duration::from_secs(60),
            );
            let Some(stats) = stats else {
                l.dump_all();
                panic!(
                    "strata fs stats of {} got no answer in 60 s: its daemon's control thread is \
                     stuck (stacks above)",
                    b.name
                );
            };
            let stuck: Vec<String> = b
                .progress
                .iter()
                .filter(|(_, (_, at))| now.duration_since(*at) > STALL)
                .map(|(w, (i, _))| format!("worker {w} at iteration {i}"))
                .collect();
            if !stuck.is_empty() || (b.progress.len() < WORKERS + 1 && t > STALL.as_secs()) {
                l.dump_all();
                panic!(
                    "deadlock? {}: {} made no progress for {} s ({} of {} workers reported at \
                     all); the stacks of every daemon and container are printed above",
                    b.name,
                    stuck.join(", "),
                    STALL.as_secs(),
                    b.progress.len(),
                    WORKERS + 1
                );
            }
            let b = &mut l.boxes[i];
            if stats.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
                sample.nodes = v["nodes"].as_u64();
                let bad: Vec<String> = v["errnos"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(e, _)| !EXPECTED_ERRNOS.contains(&e.as_str()))
                    .map(|(e, n)| format!("{e} x{n}"))
                    .collect();
                if !bad.is_empty() {
                    let b = &l.boxes[i];
                    panic!(
                        "the daemon of {} answered {} after {t} s (expected only {:?}): run the \
                         workload with --log-level debug to see which requests\n{}",
                        b.name,
                        bad.join(", "),
                        EXPECTED_ERRNOS,
                        l.dump(b)
                    );
                }
                b.stats = Some(v);
            } else {
                eprintln!(
                    "warning: strata fs stats of {} failed: {}",
                    b.name,
                    String::from_utf8_lossy(&stats.stderr)
                );
            }
            b.samples.push(sample);
        }
        if Instant::now() >= end {
            break;
        }
    }

    // The big files really went through deltas: worker 0's was compacted into a whole upper
    // file by its 256 KiB runs, the others' are still deltas.
    let mut whence = Vec::new();
    for b in &l.boxes {
        let mut seen = Vec::new();
        for w in 0..WORKERS {
            let p = l.cdir(&b.id).join(format!("merged/data/big{w}"));
            let want = if w == 0 { "upper" } else { "delta" };
            let iters = b.progress.get(&w.to_string()).map_or(0, |p| p.0);
            // The worker renames it away and back now and then (a whiteout or nothing in
            // between): ask again, for a minute, as on 2 shared cores a worker may sit
            // between the two renames for seconds.
            let mut v = serde_json::Value::Null;
            for _ in 0..300 {
                v = serde_json::from_str(&l.ok(&["whence", "--json", p.to_str().unwrap()], 60))
                    .unwrap();
                if v["origin"] == want || iters < 5 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            assert!(
                v["origin"] == want || iters < 5,
                "{}: /data/big{w} after {iters} iterations of worker {w} is {v}, want {want}",
                b.name
            );
            seen.push(v["text"].as_str().unwrap_or_default().to_string());
        }
        whence.push(seen.join("; "));
    }

    // Stop all at once: each finishes its iteration, verifies everything and exits 0.
    eprintln!("load: {} s: stopping", start.elapsed().as_secs());
    let stops: Vec<_> = l
        .boxes
        .iter()
        .map(|b| {
            let cmd = l.cmd(&["stop", "-t", "300", &b.name]);
            let name = b.name.clone();
            std::thread::spawn(move || (name, timed(cmd, Duration::from_secs(400))))
        })
        .collect();
    for s in stops {
        let (name, out) = s.join().unwrap();
        match out {
            Some(o) => assert!(
                o.status.success(),
                "strata stop {name} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            None => {
                l.dump_all();
                panic!("strata stop {name} did not return in 400 s (stacks above)");
            }
        }
    }
    let ps = l.ok(&["ps", "-a"], 60);
    let (mut total, mut walks) = (0u64, 0u64);
    let mut per_box = Vec::new();
    for b in &l.boxes {
        let logs = l.ok(&["logs", &b.name], 60);
        assert!(
            !logs.contains("LOADFAIL") && logs.contains("LOADDONE"),
            "{}: the workload failed or did not finish its final verification; its log:\n{logs}",
            b.name
        );
        for w in 0..WORKERS {
            assert!(
                logs.lines().any(|x| x == format!("DONE {w}")),
                "{}: worker {w} did not finish; log:\n{logs}",
                b.name
            );
        }
        let line = ps.lines().find(|x| x.contains(&b.name)).unwrap_or_default();
        assert!(
            line.contains("Exited (0)"),
            "{} did not exit 0 after its stop: {line}",
            b.name
        );
        let iters: u64 = (0..WORKERS)
            .map(|w| b.progress.get(&w.to_string()).map_or(0, |p| p.0 + 1))
            .sum();
        assert!(
            iters >= WORKERS as u64,
            "{}: only {iters} iterations",
            b.name
        );
        total += iters;
        walks += b.progress.get("r").map_or(0, |p| p.0 + 1);
        per_box.push(iters);
    }

    // The upper as `diff` reads it, then every view again after a remount.
    eprintln!(
        "load: {} s: diff and verification after a remount",
        start.elapsed().as_secs()
    );
    for b in &l.boxes {
        let diff = l.ok(&["diff", &b.name], 120);
        for want in ["A /work/w0/u0", "C /data"] {
            assert!(
                diff.lines().any(|x| x == want),
                "{}: strata diff lacks {want:?}:\n{diff}",
                b.name
            );
        }
    }
    let verifies: Vec<_> = l
        .boxes
        .iter()
        .map(|b| {
            let cmd = l.cmd(&["start", "-a", &b.name]);
            let name = b.name.clone();
            std::thread::spawn(move || (name, timed(cmd, Duration::from_secs(400))))
        })
        .collect();
    for v in verifies {
        let (name, out) = v.join().unwrap();
        let Some(o) = out else {
            l.dump_all();
            panic!("the verification run of {name} did not end in 400 s (stacks above)");
        };
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && stdout.contains("VERIFYDONE"),
            "{name}: verification after a remount failed ({}): {stdout}{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // Daemon logs: no errors, no panics. fuser logs a reply the kernel no longer waits for
    // as an error (ENOENT): a release still being answered when the unmount at the stop
    // ended the connection, which the protocol allows.
    for b in &l.boxes {
        let dlog = l.daemon_log(b);
        let bad: Vec<&str> = dlog
            .lines()
            .filter(|x| x.contains("ERROR") || x.contains("panicked"))
            .filter(|x| {
                !x.contains("Failed to send FUSE reply: No such file or directory (os error 2)")
            })
            .collect();
        assert!(
            bad.is_empty(),
            "{}: its daemon logged errors (work/strata.log):\n{}",
            b.name,
            bad.join("\n")
        );
    }

    // Summary, then the bounds.
    let mut report = String::new();
    let (mut peak_rss, mut peak_fds, mut peak_nodes) = (0u64, 0usize, 0u64);
    for ((b, iters), whence) in l.boxes.iter().zip(&per_box).zip(&whence) {
        let last = b.samples.last().cloned().unwrap_or_default();
        let rss_peak = b.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let fds_peak = b.samples.iter().map(|s| s.fds).max().unwrap_or(0);
        let nodes_peak = b.samples.iter().filter_map(|s| s.nodes).max().unwrap_or(0);
        peak_rss = peak_rss.max(rss_peak);
        peak_fds = peak_fds.max(fds_peak);
        peak_nodes = peak_nodes.max(nodes_peak);
        let st = b.stats.clone().unwrap_or_default();
        let ops: u64 = st["ops"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
        let _ = writeln!(
            report,
            "  {:7} iters {:5}  rss final/peak {:>5}/{:>5} MiB (hwm {})  fds final/peak {:>4}/{:>4}  \
             nodes final/peak {:>5}/{:>5}  threads {}  ops {} errnos {}\n          big files: \
             {whence}",
            b.name,
            iters,
            mib(last.rss_kib),
            mib(rss_peak),
            mib(last.hwm_kib),
            last.fds,
            fds_peak,
            last.nodes.unwrap_or(0),
            nodes_peak,
            last.threads,
            ops,
            st["errnos"],
        );
    }
    println!(
        "load: {containers} containers x {WORKERS} workers + reader, {secs} s, {total} iterations \
         (min {} max {} per container), {walks} reader passes; daemon peak RSS {} MiB, peak fds {peak_fds}, peak nodes \
         {peak_nodes}\n{report}",
        per_box.iter().min().unwrap_or(&0),
        per_box.iter().max().unwrap_or(&0),
        mib(peak_rss)
    );

    for b in &l.boxes {
        let early: Vec<&Sample> = b.samples.iter().filter(|s| s.t <= warm).collect();
        let late: Vec<&Sample> = b.samples.iter().filter(|s| s.t > warm).collect();
        let Some(last) = b.samples.last() else {
            continue;
        };
        let fd_base = early.iter().map(|s| s.fds).max().unwrap_or(0);
        let late_fds: Vec<usize> = late.iter().map(|s| s.fds).collect();
        assert!(
            late_fds.iter().all(|f| *f <= fd_base + FD_SLACK),
            "{}: the daemon's open fds grew after the warm-up ({warm} s: at most {fd_base}) to \
             {late_fds:?}: an fd leak (look at /proc/PID/fd: dirfd cache, delta files, backing \
             ids)",
            b.name
        );
        let rss_base = early.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        assert!(
            last.rss_kib <= RSS_CAP_KIB,
            "{}: the daemon's RSS is {} MiB at the end, over the {} MiB cap",
            b.name,
            mib(last.rss_kib),
            mib(RSS_CAP_KIB)
        );
        assert!(
            last.rss_kib <= rss_base + RSS_SLACK_KIB,
            "{}: the daemon's RSS grew from {} MiB after the warm-up to {} MiB: an unbounded \
             cache or a leak (samples: {:?})",
            b.name,
            mib(rss_base),
            mib(last.rss_kib),
            b.samples
                .iter()
                .map(|s| s.rss_kib / 1024)
                .collect::<Vec<_>>()
        );
        let node_base = early.iter().filter_map(|s| s.nodes).max().unwrap_or(0);
        let node_last = last.nodes.unwrap_or(0);
        assert!(
            node_last <= node_base * 2 + 256,
            "{}: the daemon's node table grew from {node_base} to {node_last}: nodes the kernel \
             forgot are kept (fs/src/inode.rs)",
            b.name
        );
    }

    // Remove: nothing may be left.
    eprintln!("load: {} s: removing", start.elapsed().as_secs());
    let ids: Vec<String> = l.boxes.iter().map(|b| b.id.clone()).collect();
    let mut args = vec!["rm"];
    args.extend(l.boxes.iter().map(|b| b.name.as_str()));
    l.ok(&args, 300);
    assert_eq!(
        l.ok(&["ps", "-a", "-q"], 60),
        "",
        "containers left after rm"
    );
    let mounts = mounts_under(&l.root());
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
    let left: Vec<String> = pids_mentioning(&l.root())
        .into_iter()
        .map(|p| format!("{p}: {}", cmdline(p).join(" ")))
        .collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    for id in &ids {
        for d in cgroup_dirs(id) {
            assert!(!d.exists(), "cgroup {} left behind", d.display());
        }
        assert!(!l.cdir(id).exists(), "container directory {id} left behind");
    }
    l.boxes.clear();
}

/// Read the progress lines `P WORKER ITERATION` of a container's log into `b`; the first
/// `LOADFAIL` line if there is one.
fn progress(b: &mut Ctr, log: &str, now: Instant) -> Option<String> {
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for l in log.lines() {
        if l.contains("LOADFAIL") {
            return Some(l.to_string());
        }
        let mut f = l.split(' ');
        if let (Some("P"), Some(w), Some(i)) = (f.next(), f.next(), f.next()) {
            if let Ok(i) = i.parse::<u64>() {
                last.insert(w.to_string(), i);
            }
        }
    }
    for (w, i) in last {
        let e = b.progress.entry(w).or_insert((i, now));
        if e.0 != i {
            *e = (i, now);
        }
    }
    None
}
