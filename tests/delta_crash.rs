//! Crash consistency of block-level delta files (BRIEF §3, §7; issue 3).
//!
//! A writer process (bin/delta_writer.rs) does fsync'ed and unsynced writes into three
//! files that start in a lower branch (so they become deltas) while the test SIGKILLs the
//! strata daemon at a random point of its log. After each kill: `umount -l`,
//! `strata fsck UPPER --lowerdir LOWER` must be clean, then on a fresh mount every 4 KiB
//! block must read as one of the contents the writer's log allows: its content at the
//! file's last fsync, or the content after one of the writes issued since (old or new,
//! never a mix of lower and upper bytes, never zeros); whatever was fsync'ed is there.
//! Repeated (`STRATA_CRASH_ITERS`, default 20 + 12); the seed is printed on failure.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_tests::delta::{meta_line, pattern, write_lower, DeltaMount};
use strata_tests::{seeds, wait_until, Rng};

const BLOCK: usize = 4096;
const FILES: [(&str, u64); 3] = [
    ("a.img", 4 << 20),
    ("sub/b.img", 2 << 20),
    ("c.img", 3 << 19),
];

fn iterations(default: usize) -> usize {
    std::env::var("STRATA_CRASH_ITERS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

struct SeedGuard {
    seed: u64,
    test: &'static str,
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n{} failed with seed {:#x}; replay (the kill points depend on timing, the writes do not) with:\n  STRATA_SEED={:#x} cargo test -p strata-tests --test delta_crash -- {} --nocapture\n",
                self.test, self.seed, self.seed, self.test
            );
        }
    }
}

/// Kills the writer if the test fails while it runs.
struct Writer(Child);

impl Drop for Writer {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// What the writer's log allows for each block of one file.
#[derive(Default)]
struct Allowed {
    /// Block -> possible contents, oldest first (the first is the content at the last
    /// fsync, or before this iteration).
    states: HashMap<usize, Vec<Vec<u8>>>,
    /// Block -> index in `states` of the content after the last write that returned.
    done: HashMap<usize, usize>,
    /// fsyncs of this file that returned.
    fsyncs: usize,
}

struct LogSummary {
    writes: usize,
    done: usize,
    fsyncs: usize,
    lines: usize,
}

fn replay(log: &Path, base: &[Vec<u8>]) -> (Vec<Allowed>, LogSummary) {
    let mut allowed: Vec<Allowed> = base.iter().map(|_| Allowed::default()).collect();
    // gen -> (file, blocks with the index of the state the write produced)
    let mut issued: HashMap<u64, (usize, Vec<(usize, usize)>)> = HashMap::new();
    let mut sum = LogSummary {
        writes: 0,
        done: 0,
        fsyncs: 0,
        lines: 0,
    };
    let f = std::fs::File::open(log).unwrap();
    for line in std::io::BufReader::new(f).lines() {
        let line = line.unwrap();
        sum.lines += 1;
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.first().copied() {
            Some("W") => {
                sum.writes += 1;
                let (i, off, len, gen): (usize, usize, usize, u64) = (
                    w[1].parse().unwrap(),
                    w[2].parse().unwrap(),
                    w[3].parse().unwrap(),
                    w[4].parse().unwrap(),
                );
                let data = pattern(gen, off as u64, len);
                let mut blocks = Vec::new();
                for blk in off / BLOCK..=(off + len - 1) / BLOCK {
                    let st = allowed[i]
                        .states
                        .entry(blk)
                        .or_insert_with(|| vec![base[i][blk * BLOCK..(blk + 1) * BLOCK].to_vec()]);
                    let mut new = st.last().unwrap().clone();
                    let a = off.max(blk * BLOCK);
                    let b = (off + len).min((blk + 1) * BLOCK);
                    new[a - blk * BLOCK..b - blk * BLOCK].copy_from_slice(&data[a - off..b - off]);
                    st.push(new);
                    blocks.push((blk, st.len() - 1));
                }
                issued.insert(gen, (i, blocks));
            }
            Some("D") => {
                sum.done += 1;
                let gen: u64 = w[1].parse().unwrap();
                let (i, blocks) = issued.get(&gen).unwrap();
                for (blk, idx) in blocks {
                    allowed[*i].done.insert(*blk, *idx);
                }
            }
            Some("S") => {
                sum.fsyncs += 1;
                let i: usize = w[1].parse().unwrap();
                let a = &mut allowed[i];
                a.fsyncs += 1;
                // Every write to this file returned before the fsync (one writer thread):
                // their result is now the only allowed old content.
                for (blk, st) in a.states.iter_mut() {
                    let last = st.pop().unwrap();
                    st.clear();
                    st.push(last);
                    a.done.insert(*blk, 0);
                }
                for (_, blocks) in issued.values_mut().filter(|(f, _)| *f == i) {
                    blocks.clear();
                }
            }
            Some("E") => {}
            _ => panic!("bad writer log line {line:?}"),
        }
    }
    (allowed, sum)
}

fn run(test: &'static str, extra: &str, iters: usize) {
    let seed = seeds(1)[0];
    let _g = SeedGuard { seed, test };
    let mut rng = Rng::new(seed);
    let start = Instant::now();
    let mut m = DeltaMount::new("crash", extra);
    let mut base: Vec<Vec<u8>> = FILES
        .iter()
        .enumerate()
        .map(|(i, (name, size))| write_lower(&m.lower.join(name), 0xA000 + i as u64, *size))
        .collect();
    // An untouched file beside them, to check the mount keeps serving after each crash.
    let other = write_lower(&m.lower.join("other.img"), 0xB000, 1 << 20);
    m.mount();
    let writer_bin = env!("CARGO_BIN_EXE_strata-delta-writer");
    let (mut lost_unsynced, mut total_writes, mut total_fsyncs, mut was_delta) = (0, 0, 0, 0);
    for it in 0..iters {
        let log = m.dir.join(&format!("writer-{it}.log"));
        let target = 20 + rng.below(1200) as usize;
        let mut cmd = Command::new(writer_bin);
        cmd.arg(&log)
            .arg(rng.next_u64().to_string())
            .arg(((it as u64 + 1) << 32).to_string())
            // Writes stay in 256 KiB of each file (the files stay deltas), except in the
            // last iterations, which go anywhere (compactions, killed or not).
            .arg(if it + 3 < iters { "262144" } else { "0" });
        for (name, _) in FILES {
            cmd.arg(m.p(name));
        }
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {writer_bin}: {e}"));
        let mut writer = Writer(child);
        let count = |p: &Path| {
            std::fs::read(p)
                .map(|b| b.iter().filter(|c| **c == b'\n').count())
                .unwrap_or(0)
        };
        let reached = wait_until(Duration::from_secs(120), || {
            count(&log) >= target || !matches!(writer.0.try_wait(), Ok(None))
        });
        if let Ok(Some(st)) = writer.0.try_wait() {
            panic!(
                "iteration {it}: the writer exited ({st}) before the kill:\n{}\n{}",
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .lines()
                    .last()
                    .unwrap_or(""),
                m.log()
            );
        }
        assert!(
            reached,
            "iteration {it}: the writer did not log {target} lines in 120 s"
        );
        m.kill_daemon();
        let exited = wait_until(Duration::from_secs(30), || {
            !matches!(writer.0.try_wait(), Ok(None))
        });
        assert!(
            exited,
            "iteration {it}: the writer is still running 30 s after the daemon was killed"
        );
        drop(writer);
        let (ok, out) = m.fsck(false);
        assert!(
            ok,
            "iteration {it}: strata fsck after kill -9 is not clean:\n{out}"
        );
        for (name, _) in FILES {
            if m.meta(name)
                .is_some_and(|v| meta_line(&v, "delta").is_some())
            {
                was_delta += 1;
            }
        }
        m.mount();
        let (allowed, sum) = replay(&log, &base);
        total_writes += sum.done;
        total_fsyncs += sum.fsyncs;
        for (i, (name, size)) in FILES.iter().enumerate() {
            let got = std::fs::read(m.p(name)).unwrap_or_else(|e| {
                panic!(
                    "iteration {it}: read {name} after the crash: {e}\n{}",
                    m.log()
                )
            });
            assert_eq!(got.len() as u64, *size, "iteration {it}: size of {name}");
            let a = &allowed[i];
            for blk in 0..got.len() / BLOCK {
                let g = &got[blk * BLOCK..(blk + 1) * BLOCK];
                match a.states.get(&blk) {
                    None => {
                        if g != &base[i][blk * BLOCK..(blk + 1) * BLOCK] {
                            panic!(
                                "iteration {it}: {name} block {blk} was not written but changed ({})\n{}",
                                describe(g, &base[i][blk * BLOCK..(blk + 1) * BLOCK]),
                                m.log()
                            );
                        }
                    }
                    Some(states) => {
                        let Some(k) = states.iter().position(|s| s.as_slice() == g) else {
                            let fsynced = a.fsyncs > 0 && states.len() == 1;
                            panic!(
                                "iteration {it}: {name} block {blk} reads as neither its old nor a new content ({} candidate states, fsync'ed: {fsynced}; vs the oldest allowed: {}); log {} ({} lines, {} writes, {} returned, {} fsyncs)",
                                states.len(),
                                describe(g, &states[0]),
                                log.display(),
                                sum.lines,
                                sum.writes,
                                sum.done,
                                sum.fsyncs
                            );
                        };
                        if a.done.get(&blk).is_some_and(|d| k < *d) {
                            lost_unsynced += 1;
                        }
                    }
                }
            }
            base[i] = got;
        }
        let o = std::fs::read(m.p("other.img")).unwrap();
        assert!(
            o == other,
            "iteration {it}: the untouched lower file reads wrong"
        );
    }
    m.unmount();
    let (ok, out) = m.fsck(false);
    assert!(ok, "strata fsck at the end is not clean:\n{out}");
    eprintln!(
        "{test}: seed {seed:#x}: {iters} kills, {total_writes} writes returned, {total_fsyncs} fsyncs, {was_delta} file-crashes on a delta, {lost_unsynced} blocks of returned unsynced writes read old, {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

/// How a block differs from a reference: which bytes, and whether it is all zeros.
fn describe(got: &[u8], reference: &[u8]) -> String {
    let diff: Vec<usize> = (0..got.len()).filter(|&i| got[i] != reference[i]).collect();
    let zeros = got.iter().all(|b| *b == 0);
    format!(
        "{} bytes differ, first at {:?}, last at {:?}, block all zeros: {zeros}",
        diff.len(),
        diff.first(),
        diff.last()
    )
}

/// Default options: 4K blocks, compaction at half the blocks (kills also land in the
/// middle of compactions).
#[test]
fn crash_block4k() {
    run("crash_block4k", "", iterations(20));
}

/// 64K blocks (every 4K write fills the rest of its block from below first), no
/// compaction by coverage.
#[test]
fn crash_block64k_no_compaction() {
    run(
        "crash_block64k_no_compaction",
        "delta_block=64K,compact_ratio=1.0",
        iterations(12),
    );
}

/// kill -9 while the background worker compacts a large delta (right after the write that
/// queued the compaction returned, then a little later): `strata fsck` is clean and, on a
/// new mount, the file reads exactly what was written, whether the worker's copy was cut
/// off (a valid delta, whose extra upper bytes are ignored) or had finished.
#[test]
fn crash_during_background_compaction() {
    const SIZE: usize = 32 << 20;
    let total = SIZE / BLOCK;
    let trigger = total / 100 + 1;
    let (mut cut, mut finished) = (0, 0);
    for (it, after) in [0usize, 0, 3, 40].into_iter().enumerate() {
        let mut m = DeltaMount::new("crash-compact", "compact_ratio=0.01");
        let lower = write_lower(&m.lower.join("big.img"), 0xC000 + it as u64, SIZE as u64);
        m.mount();
        let fd = strata_tests::sys::open(&m.p("big.img"), libc::O_RDWR, 0).unwrap();
        let mut want = lower.clone();
        for i in 0..trigger + after {
            let blk = (i * 7919 + it) % total;
            let data = pattern(0xD000 + (it * 1000 + i) as u64, 0, BLOCK);
            strata_tests::sys::pwrite_all(&fd, &data, (blk * BLOCK) as u64).unwrap();
            want[blk * BLOCK..(blk + 1) * BLOCK].copy_from_slice(&data);
        }
        assert!(
            m.compactions("queued").is_some_and(|q| q >= 1),
            "iteration {it}: no compaction queued"
        );
        m.kill_daemon();
        drop(fd);
        let (ok, out) = m.fsck(false);
        assert!(
            ok,
            "iteration {it}: fsck after kill -9 mid-compaction:\n{out}"
        );
        if m.meta("big.img")
            .is_some_and(|v| meta_line(&v, "delta").is_some())
        {
            cut += 1;
        } else {
            finished += 1;
        }
        m.mount();
        let got = std::fs::read(m.p("big.img")).unwrap();
        assert!(
            got == want,
            "iteration {it}: the file reads wrong after a kill during compaction\n{}",
            m.log()
        );
        m.unmount();
        let (ok, out) = m.fsck(false);
        assert!(ok, "iteration {it}: fsck at the end:\n{out}");
    }
    eprintln!("crash_during_background_compaction: {cut} kills cut a compaction short, {finished} came after it finished");
}
