//! Layers that stack (issue 14): seeded random operation sequences on a strata mount and
//! a kernel overlayfs mount (`redirect_dir=on,index=on,metacopy=on`) of identical
//! branches; every 10–60 operations both are unmounted (the daemon must exit), the
//! upper is pushed down as the new top lower (`lowerdir=uK:...:u1:l0:l1`) with a fresh
//! upper and workdir, and both are mounted again: at least 6 rotations per seed.
//!
//! Kernel options: 6.18 accepts `redirect_dir=on,index=on,metacopy=on` with every branch
//! on the ext4 under /tmp (index=on needs file handles on the upper fs, which ext4 has;
//! `nfs_export` stays off, its module default, and is not needed). Fresh upper and
//! workdir per level keep index=on's check of the upper's origin against the first lower
//! satisfied. A kernel that refuses gets fewer options (support/mount.rs); the set used
//! is in every failure and in the summary line.
//!
//! Checked: every operation's outcome (errno, stat, bytes, st_ino kept) equals the
//! kernel's; at every rotation the whole merged tree (names, types, content hashes,
//! modes, owners, sizes, nlink, symlink targets, user xattrs, hard-link groups) equals
//! the kernel's before it, strata's tree after it is the same as before it, and every
//! path whose st_ino the kernel keeps across the rotation keeps it on strata too.
//!
//! What the kernel does not keep across a rotation (6.x, all branches on one ext4):
//! * st_ino of anything copied up (file or directory): overlayfs reports the copy-up
//!   origin's inode only for an *upper* entry; once the copy is in a lower branch it
//!   reports the copy's own inode. New entries and lower entries never copied up keep it.
//!   strata is only held to what the kernel keeps; paths where strata keeps more are
//!   counted in the summary line.
//! * hard links of lower files copied up through only some names (and an alias unlinked
//!   at one level): the kernel found the other names through its index in the old
//!   workdir, gone after the rotation, so they show the stale lower inode (old bytes, old
//!   nlink, two inodes). There strata must show the tree as it was before the rotation
//!   (that is asserted first); the kernel's view is then repaired through its own mount
//!   from the kernel's own bytes before the rotation (support/stack.rs,
//!   `repair_overlay`) so the differential goes on, and the repairs are printed.
//!
//! Replay: `STRATA_SEED=<seed> cargo test -p strata-tests --test stack_random`;
//! `STRATA_OPS=<n>` operations per seed (default 240, rotations every 10–60, at least 6);
//! `STRATA_STEPS=0-40,52,...` runs only those steps of the seed's schedule (a shrunk
//! replay); `STRATA_SHRINK=1` shrinks a failing seed to a minimal list of steps.

#[path = "stack_random/ops.rs"]
mod ops;

use ops::{gen_op, pattern, run, Op, MIB};
use std::collections::BTreeSet;
use strata_tests::mount::self_check;
use strata_tests::stack::{changed_inodes, file_bytes, inodes, repair_overlay, rotate};
use strata_tests::{seeds, Fixture, Layer, Opq, Pair, Rng, Wh};

/// Rotations per seed at least (the issue asks for 5 levels deep).
const MIN_ROTATIONS: usize = 6;

fn fixture() -> Fixture {
    let top = Layer::new()
        .file("a/f", "a/f from top\n")
        .opaque("a/b", Opq::WhFile)
        .file("a/b/c", "a/b/c top\n")
        .whiteout("b", Wh::File)
        .file("c/g", "c/g top\n")
        .xattr("c/g", "user.a", "top");
    let bottom = Layer::new()
        .file("f", pattern(2 * MIB + 777, 1))
        .hardlink("c/b", "f")
        .file("a/f", "a/f from bottom\n")
        .file("a/g", pattern(3 * MIB, 2))
        .file("a/b/f", "a/b/f bottom\n")
        .fifo("a/c")
        .file("b", "b bottom\n")
        .file("c/f", "c/f bottom\n")
        .file("c/a/a", pattern(2 * MIB + 4096 * 100 + 5, 3))
        .dir("c/a/b")
        .symlink("c/c", "../f")
        .xattr("c", "user.b", "dir")
        .file("g/a", "g/a bottom\n")
        .hardlink("g/c", "g/a")
        .file("g/f", pattern(2 * MIB, 4))
        .file("g/g/f", "g/g/f bottom\n")
        .xattr("g/g/f", "user.a", "deep");
    Fixture::new().lower(top).lower(bottom)
}

#[derive(Clone, Debug)]
enum Step {
    Op(Op),
    Rotate,
}

fn ops_per_seed() -> usize {
    std::env::var("STRATA_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(240)
}

/// The whole schedule of a seed: chunks of 10–60 operations, each followed by a rotation.
fn schedule(seed: u64) -> Vec<Step> {
    let mut r = Rng::new(seed);
    let total = ops_per_seed();
    let (mut steps, mut ops, mut rotations) = (Vec::new(), 0, 0);
    while ops < total || rotations < MIN_ROTATIONS {
        let n = 10 + r.below(51) as usize;
        steps.extend((0..n).map(|_| Step::Op(gen_op(&mut r))));
        steps.push(Step::Rotate);
        ops += n;
        rotations += 1;
    }
    steps
}

/// `0-40,52` -> those step indices.
fn parse_steps(s: &str) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
        out.extend(a..=b);
    }
    out
}

/// Step indices as `0-40,52`.
fn format_steps(keep: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < keep.len() {
        let mut j = i;
        while j + 1 < keep.len() && keep[j + 1] == keep[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            keep[i].to_string()
        } else {
            format!("{}-{}", keep[i], keep[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// One run of (a subset of) a seed's schedule.
struct Run {
    seed: u64,
    /// (index in the schedule, step) in order.
    steps: Vec<(usize, Step)>,
    log: Vec<String>,
    level: usize,
}

impl Run {
    fn replay(&self) -> String {
        let only = self.steps.iter().map(|(i, _)| *i).collect::<Vec<_>>();
        let full = only.len() == schedule(self.seed).len();
        let steps = if full {
            String::new()
        } else {
            format!("STRATA_STEPS={} ", format_steps(&only))
        };
        format!(
            "replay: STRATA_SEED={} STRATA_OPS={} {steps}cargo test -p strata-tests --test stack_random -- --nocapture",
            self.seed,
            ops_per_seed()
        )
    }

    fn fail(&self, p: &Pair, what: &str) -> ! {
        let start = self.log.len().saturating_sub(80);
        let log = self.log[start..].join("\n");
        let work_log = p.s.work.as_ref().map(|w| w.join("strata.log"));
        let dlog = p.s.log()
            + &work_log
                .and_then(|l| std::fs::read_to_string(l).ok())
                .unwrap_or_default();
        let dtail: Vec<&str> = dlog.lines().rev().take(20).collect();
        let dtail: Vec<&str> = dtail.into_iter().rev().collect();
        panic!(
            "seed {} level {}: {what}\nsteps ({} of {} logged):\n{log}\nstrata log tail:\n{}\n{}\noverlayfs options: {}",
            self.seed,
            self.level,
            self.log.len() - start,
            self.log.len(),
            dtail.join("\n"),
            self.replay(),
            p.o.options
        );
    }

    /// The whole tree of `m`; a walk that fails (an entry listed but not readable) is a
    /// failure of this seed, reported with its steps.
    fn walk(&self, p: &Pair, m: &strata_tests::Mounted) -> strata_tests::Tree {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.tree())) {
            Ok(t) => t,
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.fail(p, &format!("walking the merged tree: {msg}"))
            }
        }
    }

    fn compare_trees(&self, p: &Pair, when: &str) -> strata_tests::Tree {
        let o = self.walk(p, &p.o);
        let s = self.walk(p, &p.s);
        let diff = o.diff(&s);
        if !diff.is_empty() {
            self.fail(
                p,
                &format!(
                    "merged trees differ {when} (overlayfs -> strata):\n{}",
                    diff.join("\n")
                ),
            );
        }
        o
    }

    /// The checks of one rotation; returns (strata paths with st_ino kept beyond what the
    /// kernel kept, kernel repairs).
    fn rotation(&mut self, p: &mut Pair) -> (usize, usize) {
        let want = self.compare_trees(p, "before the rotation");
        let (ino_o, ino_s) = (inodes(&p.o, &want), inodes(&p.s, &want));
        let bytes_o = file_bytes(&p.o, &want);
        let bytes_s = if self_check() {
            file_bytes(&p.s, &want)
        } else {
            Default::default()
        };
        self.level += 1;
        rotate(&mut p.o, self.level);
        rotate(&mut p.s, self.level);
        let s_after = self.walk(p, &p.s);
        let diff = want.diff(&s_after);
        // A self-check run has overlayfs on both sides: its own departures are repaired below.
        if !diff.is_empty() && !self_check() {
            self.fail(
                p,
                &format!(
                    "strata's merged tree changed across the rotation (before -> after):\n{}",
                    diff.join("\n")
                ),
            );
        }
        let (after_o, after_s) = (inodes(&p.o, &want), inodes(&p.s, &want));
        let changed_o: BTreeSet<String> = changed_inodes(&ino_o, &after_o).into_iter().collect();
        let changed_s = changed_inodes(&ino_s, &after_s);
        let lost: Vec<&String> = changed_s
            .iter()
            .filter(|q| !changed_o.contains(*q))
            .collect();
        if !lost.is_empty() {
            self.fail(
                p,
                &format!(
                    "st_ino changed across the rotation on strata where overlayfs kept it: {lost:?}\n  (overlayfs changed: {changed_o:?})"
                ),
            );
        }
        let beyond = changed_o.len() - changed_s.iter().filter(|q| changed_o.contains(*q)).count();
        if self_check() {
            if let Err(e) = repair_overlay(&p.s, &want, &bytes_s) {
                self.fail(p, &e);
            }
        }
        let repairs = repair_overlay(&p.o, &want, &bytes_o).unwrap_or_else(|e| self.fail(p, &e));
        for r in &repairs {
            eprintln!(
                "stack_random: seed {} level {}: overlayfs repaired after rotation: {r}",
                self.seed, self.level
            );
        }
        self.log.push(format!(
            "-- rotation to level {} (overlayfs changed st_ino of {} paths, strata of {}; {} overlayfs repairs) --",
            self.level,
            changed_o.len(),
            changed_s.len(),
            repairs.len()
        ));
        (beyond, repairs.len())
    }

    fn go(&mut self) {
        let mut p = fixture().pair();
        self.compare_trees(&p, "at the start");
        let (mut ops, mut ok, mut beyond, mut repairs) = (0, 0, 0, 0);
        let steps = self.steps.clone();
        for (i, step) in &steps {
            match step {
                Step::Rotate => {
                    let (b, r) = self.rotation(&mut p);
                    beyond += b;
                    repairs += r;
                }
                Step::Op(op) => {
                    ops += 1;
                    let o = run(&p.o, op);
                    let s = run(&p.s, op);
                    if o.starts_with("Ok") {
                        ok += 1;
                    }
                    self.log.push(format!("#{i} {op:?} -> {o}"));
                    if o != s {
                        self.fail(
                            &p,
                            &format!(
                                "step #{i} {op:?} differs\n  overlayfs: {o}\n  strata:    {s}"
                            ),
                        );
                    }
                }
            }
        }
        self.compare_trees(&p, "at the end");
        let extra: Vec<&str> =
            p.o.options
                .split(',')
                .filter(|o| !o.contains("dir="))
                .collect();
        eprintln!(
            "stack_random: seed {}: {ops} ops ({ok} succeeded), {} levels, strata kept st_ino of {beyond} paths the kernel did not, {repairs} overlayfs repairs (overlayfs -o {})",
            self.seed, self.level, extra.join(",")
        );
    }
}

/// Run `keep` (indices into the seed's schedule, all when None); Err(first line of the
/// failure) instead of a panic when `quiet`.
fn run_steps(seed: u64, keep: Option<&BTreeSet<usize>>) {
    let steps = schedule(seed)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.is_none_or(|k| k.contains(i)))
        .collect();
    let mut r = Run {
        seed,
        steps,
        log: Vec::new(),
        level: 0,
    };
    r.go();
}

/// The kind of a failure message (what must stay the same while shrinking).
fn failure_kind(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or("");
    let rest = first.split_once(": ").map(|(_, r)| r).unwrap_or(first);
    rest.split(['#', '(', ':'])
        .next()
        .unwrap_or(rest)
        .trim()
        .to_string()
}

fn try_steps(seed: u64, keep: &BTreeSet<usize>) -> Option<String> {
    let r = std::panic::catch_unwind(|| run_steps(seed, Some(keep)));
    r.err().map(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

/// Greedy shrinking (delta debugging, bounded): drop chunks of steps while the same kind
/// of failure remains; prints the replay of the smallest failing list.
fn shrink(seed: u64, msg: &str) {
    let kind = failure_kind(msg);
    let mut keep: Vec<usize> = (0..schedule(seed).len()).collect();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut chunk = keep.len() / 2;
    let mut tries = 0;
    while chunk >= 1 && tries < 400 {
        let mut i = 0;
        let mut progress = false;
        while i < keep.len() && tries < 400 {
            let cand: Vec<usize> = keep[..i]
                .iter()
                .chain(keep[(i + chunk).min(keep.len())..].iter())
                .copied()
                .collect();
            tries += 1;
            let set = cand.iter().copied().collect();
            match try_steps(seed, &set) {
                Some(m) if failure_kind(&m) == kind => {
                    keep = cand;
                    progress = true;
                }
                _ => i += chunk,
            }
        }
        if !progress {
            chunk /= 2;
        }
    }
    std::panic::set_hook(hook);
    let all = schedule(seed);
    let lines: Vec<String> = keep
        .iter()
        .map(|i| format!("  #{i} {:?}", all[*i]))
        .collect();
    eprintln!(
        "stack_random: seed {seed} shrunk ({tries} runs) to {} steps, failing with \"{kind}\":\n{}\nreplay: STRATA_SEED={seed} STRATA_OPS={} STRATA_STEPS={} cargo test -p strata-tests --test stack_random -- --nocapture",
        keep.len(),
        lines.join("\n"),
        ops_per_seed(),
        format_steps(&keep)
    );
}

fn random_sequence(seed: u64) {
    let keep = std::env::var("STRATA_STEPS").ok().map(|s| parse_steps(&s));
    eprintln!(
        "stack_random: seed {seed} (replay: STRATA_SEED={seed} STRATA_OPS={} cargo test -p strata-tests --test stack_random)",
        ops_per_seed()
    );
    if std::env::var_os("STRATA_SHRINK").is_some() && keep.is_none() {
        let all: BTreeSet<usize> = (0..schedule(seed).len()).collect();
        if let Some(msg) = try_steps(seed, &all) {
            shrink(seed, &msg);
            panic!("{msg}");
        }
        return;
    }
    run_steps(seed, keep.as_ref());
}

fn seed_for(k: usize) -> Option<u64> {
    seeds(2).get(k).copied()
}

#[test]
fn stack_random_seed_0() {
    if let Some(s) = seed_for(0) {
        random_sequence(s);
    }
}

#[test]
fn stack_random_seed_1() {
    if let Some(s) = seed_for(1) {
        random_sequence(s);
    }
}

/// Fixed seeds, so every run also covers known sequences.
#[test]
fn stack_random_fixed_seed_a() {
    if std::env::var_os("STRATA_SEED").is_none() {
        random_sequence(0x57ac_0001);
    }
}

#[test]
fn stack_random_fixed_seed_b() {
    if std::env::var_os("STRATA_SEED").is_none() {
        random_sequence(0x57ac_0002);
    }
}
