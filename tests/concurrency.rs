//! Many threads creating, renaming, writing and deleting in the same directories of a
//! strata mount with lower content. A watchdog fails the test if the threads do not
//! finish in time (deadlock); at the end the listing and contents must be exactly
//! what the threads' successful operations imply, before and after a remount.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;
use strata_tests::mount::{pids_with_arg, reap_daemons};
use strata_tests::{seeds, sys, Errno, Fixture, Layer, Mounted, Rng};

const THREADS: usize = 8;
const OWN_OPS: usize = 400;
const DIRS: usize = 4;
const LOWER_FILES: usize = 16;
const SHARED: usize = 24;
const BLOCK: usize = 4096;

fn fixture() -> Fixture {
    let mut l = Layer::new();
    for d in 0..DIRS {
        for k in 0..LOWER_FILES {
            l = l.file(&format!("d{d}/l{k}"), format!("lower d{d}/l{k}\n"));
        }
    }
    for k in 0..SHARED {
        l = l.file(&format!("d0/shared{k}"), format!("shared {k}\n"));
    }
    l = l.file("d2/big", vec![0u8; THREADS * BLOCK]);
    // A second layer so the directories are merged ones.
    let mut top = Layer::new();
    for d in 0..DIRS {
        top = top.file(&format!("d{d}/top"), format!("top d{d}\n"));
    }
    Fixture::new().lower(top).lower(l)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Dir,
}

/// What one thread did, for computing the expected end state.
#[derive(Default, Debug)]
struct Report {
    /// Final state of this thread's own names (path -> node).
    own: BTreeMap<String, Node>,
    /// shared k this thread renamed to d1/got{k}_t{i}.
    won_rename: Vec<usize>,
    /// race{k} this thread created with O_EXCL.
    won_create: Vec<usize>,
    /// rdir{k} this thread created.
    won_mkdir: Vec<usize>,
    /// d1/l{k} this thread unlinked.
    won_unlink: Vec<usize>,
}

#[derive(Clone, Copy, Debug)]
enum Task {
    Own,
    RenameShared(usize),
    CreateRace(usize),
    MkdirRace(usize),
    UnlinkRace(usize),
    WriteBig,
    ChmodShared,
    List(usize),
}

fn worker(m: &Mounted, i: usize, seed: u64) -> Report {
    let mut r = Rng::new(seed);
    let mut tasks = vec![Task::WriteBig, Task::ChmodShared];
    tasks.extend((0..OWN_OPS).map(|_| Task::Own));
    tasks.extend((0..SHARED).map(Task::RenameShared));
    tasks.extend((0..SHARED).map(Task::CreateRace));
    tasks.extend((0..SHARED).map(Task::MkdirRace));
    tasks.extend((0..LOWER_FILES).map(Task::UnlinkRace));
    tasks.extend((0..DIRS * 3).map(|k| Task::List(k % DIRS)));
    // Shuffle (Fisher-Yates) so threads interleave differently.
    for k in (1..tasks.len()).rev() {
        let j = r.below(k as u64 + 1) as usize;
        tasks.swap(k, j);
    }
    let mut rep = Report::default();
    let mut serial = 0;
    for t in tasks {
        match t {
            Task::Own => own_op(m, i, &mut r, &mut rep, &mut serial),
            Task::RenameShared(k) => {
                match m.rename(&format!("d0/shared{k}"), &format!("d1/got{k}_t{i}")) {
                    Ok(()) => rep.won_rename.push(k),
                    Err(Errno::ENOENT) => {}
                    Err(e) => panic!("t{i}: rename shared{k}: {e}"),
                }
            }
            Task::CreateRace(k) => match m.create(&format!("d3/race{k}"), 0o644) {
                Ok(()) => rep.won_create.push(k),
                Err(Errno::EEXIST) => {}
                Err(e) => panic!("t{i}: create race{k}: {e}"),
            },
            Task::MkdirRace(k) => match m.mkdir(&format!("d0/rdir{k}"), 0o755) {
                Ok(()) => rep.won_mkdir.push(k),
                Err(Errno::EEXIST) => {}
                Err(e) => panic!("t{i}: mkdir rdir{k}: {e}"),
            },
            Task::UnlinkRace(k) => match m.unlink(&format!("d1/l{k}")) {
                Ok(()) => rep.won_unlink.push(k),
                Err(Errno::ENOENT) => {}
                Err(e) => panic!("t{i}: unlink d1/l{k}: {e}"),
            },
            Task::WriteBig => {
                let n = m
                    .write_at("d2/big", (i * BLOCK) as u64, vec![b'A' + i as u8; BLOCK])
                    .unwrap_or_else(|e| panic!("t{i}: write big: {e}"));
                assert_eq!(n, BLOCK);
            }
            Task::ChmodShared => {
                m.chmod("d2/l0", 0o600)
                    .unwrap_or_else(|e| panic!("t{i}: chmod d2/l0: {e}"));
            }
            Task::List(d) => {
                let names = m
                    .names(&format!("d{d}"))
                    .unwrap_or_else(|e| panic!("t{i}: readdir d{d}: {e}"));
                assert!(names.contains(&"top".to_string()), "t{i}: d{d} lost 'top'");
            }
        }
    }
    rep
}

/// One operation on this thread's own names; it must succeed, since no other thread
/// touches them.
fn own_op(m: &Mounted, i: usize, r: &mut Rng, rep: &mut Report, serial: &mut usize) {
    let files: Vec<String> = rep
        .own
        .iter()
        .filter(|(_, n)| matches!(n, Node::File(_)))
        .map(|(p, _)| p.clone())
        .collect();
    let dirs: Vec<String> = rep
        .own
        .iter()
        .filter(|(_, n)| **n == Node::Dir)
        .map(|(p, _)| p.clone())
        .collect();
    *serial += 1;
    let s = *serial;
    let choice = if files.is_empty() { 0 } else { r.below(6) };
    match choice {
        0 => {
            // create in a shared dir or in one of our own dirs
            let parent = if !dirs.is_empty() && r.chance(30) {
                r.pick(&dirs).clone()
            } else {
                format!("d{}", r.below(DIRS as u64))
            };
            let p = format!("{parent}/t{i}_{s}");
            let data = format!("t{i} {s} created\n").into_bytes();
            m.put(&p, &data)
                .unwrap_or_else(|e| panic!("t{i}: create {p}: {e}"));
            rep.own.insert(p, Node::File(data));
        }
        1 => {
            let p = r.pick(&files).clone();
            let data = format!(
                "t{i} {s} rewritten {}\n",
                "x".repeat(r.below(3000) as usize)
            )
            .into_bytes();
            m.put(&p, &data)
                .unwrap_or_else(|e| panic!("t{i}: rewrite {p}: {e}"));
            rep.own.insert(p, Node::File(data));
        }
        2 => {
            let p = r.pick(&files).clone();
            let to = format!("d{}/t{i}_{s}_mv", r.below(DIRS as u64));
            m.rename(&p, &to)
                .unwrap_or_else(|e| panic!("t{i}: rename {p} -> {to}: {e}"));
            let n = rep.own.remove(&p).unwrap();
            rep.own.insert(to, n);
        }
        3 => {
            let p = r.pick(&files).clone();
            m.unlink(&p)
                .unwrap_or_else(|e| panic!("t{i}: unlink {p}: {e}"));
            rep.own.remove(&p);
        }
        4 => {
            let p = format!("d{}/t{i}_{s}_dir", r.below(DIRS as u64));
            m.mkdir(&p, 0o755)
                .unwrap_or_else(|e| panic!("t{i}: mkdir {p}: {e}"));
            rep.own.insert(p, Node::Dir);
        }
        _ => {
            // remove one of our dirs with its content, or append to a file
            if let Some(d) = dirs.first().cloned() {
                let inside: Vec<String> = rep
                    .own
                    .keys()
                    .filter(|k| k.starts_with(&format!("{d}/")))
                    .cloned()
                    .collect();
                for f in &inside {
                    m.unlink(f)
                        .unwrap_or_else(|e| panic!("t{i}: unlink {f}: {e}"));
                    rep.own.remove(f);
                }
                m.rmdir(&d)
                    .unwrap_or_else(|e| panic!("t{i}: rmdir {d}: {e}"));
                rep.own.remove(&d);
            } else {
                let p = r.pick(&files).clone();
                m.append(&p, b"appended\n")
                    .unwrap_or_else(|e| panic!("t{i}: append {p}: {e}"));
                if let Some(Node::File(d)) = rep.own.get_mut(&p) {
                    d.extend_from_slice(b"appended\n");
                }
            }
        }
    }
}

fn expected_state(reports: &[Report]) -> BTreeMap<String, Node> {
    let mut exp = BTreeMap::new();
    for d in 0..DIRS {
        exp.insert(format!("d{d}"), Node::Dir);
        exp.insert(
            format!("d{d}/top"),
            Node::File(format!("top d{d}\n").into_bytes()),
        );
        for k in 0..LOWER_FILES {
            exp.insert(
                format!("d{d}/l{k}"),
                Node::File(format!("lower d{d}/l{k}\n").into_bytes()),
            );
        }
    }
    let mut big = Vec::new();
    for i in 0..THREADS {
        big.extend(vec![b'A' + i as u8; BLOCK]);
    }
    exp.insert("d2/big".into(), Node::File(big));
    for k in 0..SHARED {
        exp.insert(
            format!("d0/shared{k}"),
            Node::File(format!("shared {k}\n").into_bytes()),
        );
    }
    for (i, rep) in reports.iter().enumerate() {
        for k in &rep.won_rename {
            let n = exp.remove(&format!("d0/shared{k}")).unwrap();
            exp.insert(format!("d1/got{k}_t{i}"), n);
        }
        for k in &rep.won_create {
            exp.insert(format!("d3/race{k}"), Node::File(Vec::new()));
        }
        for k in &rep.won_mkdir {
            exp.insert(format!("d0/rdir{k}"), Node::Dir);
        }
        for k in &rep.won_unlink {
            exp.remove(&format!("d1/l{k}"));
        }
        for (p, n) in &rep.own {
            exp.insert(p.clone(), n.clone());
        }
    }
    exp
}

fn actual_state(m: &Mounted) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        for (name, kind) in m.readdir(&dir).unwrap() {
            let p = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            if kind == strata_tests::FileKind::Dir {
                out.insert(p.clone(), Node::Dir);
                stack.push(p);
            } else {
                out.insert(p.clone(), Node::File(m.read(&p).unwrap()));
            }
        }
    }
    out
}

fn check_state(m: &Mounted, reports: &[Report], what: &str) {
    let exp = expected_state(reports);
    let got = actual_state(m);
    if exp != got {
        let mut lines = Vec::new();
        for (p, n) in &exp {
            match got.get(p) {
                None => lines.push(format!("  lost     {p}")),
                Some(g) if g != n => lines.push(format!("  changed  {p}: {:?}", short(g))),
                _ => {}
            }
        }
        for p in got.keys() {
            if !exp.contains_key(p) {
                lines.push(format!("  extra    {p}"));
            }
        }
        panic!(
            "{what}: final state differs from what the threads did:\n{}",
            lines.join("\n")
        );
    }
}

fn short(n: &Node) -> String {
    match n {
        Node::Dir => "dir".into(),
        Node::File(d) => {
            let s = String::from_utf8_lossy(d);
            s.chars().take(60).collect()
        }
    }
}

/// 120 s unless `STRATA_WATCHDOG_SECS` says otherwise.
fn watchdog() -> Duration {
    let secs = std::env::var("STRATA_WATCHDOG_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

#[test]
fn many_threads_same_dirs() {
    let seed = seeds(1)[0];
    eprintln!("concurrency: seed {seed} (replay: STRATA_SEED={seed})");
    let mut m = fixture().strata();
    let mnt = m.mnt.clone();
    let shared = Arc::new(m);
    let (tx, rx) = mpsc::channel();
    for i in 0..THREADS {
        let m = Arc::clone(&shared);
        let tx = tx.clone();
        std::thread::spawn(move || {
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                worker(&m, i, seed.wrapping_add(i as u64 * 7919))
            }));
            // Let go of the mount before reporting, so that the main thread holds the
            // last reference and unmounts on every path.
            drop(m);
            let _ = tx.send((i, res));
        });
    }
    drop(tx);
    let deadline = std::time::Instant::now() + watchdog();
    let mut reports: Vec<Option<Report>> = (0..THREADS).map(|_| None).collect();
    let mut failures = Vec::new();
    for _ in 0..THREADS {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, Ok(rep))) => reports[i] = Some(rep),
            Ok((i, Err(e))) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("thread {i}: {msg}"));
            }
            Err(_) => {
                let stuck: Vec<usize> = (0..THREADS).filter(|i| reports[*i].is_none()).collect();
                // Unblock the stuck threads: detach the mount and kill the daemon.
                let _ = sys::umount2(&mnt, libc::MNT_DETACH);
                reap_daemons(&pids_with_arg(&mnt.to_string_lossy()));
                panic!(
                    "watchdog: threads {stuck:?} did not finish within {:?} (deadlock?); seed {seed}",
                    watchdog()
                );
            }
        }
    }
    assert!(failures.is_empty(), "seed {seed}:\n{}", failures.join("\n"));
    let reports: Vec<Report> = reports.into_iter().map(|r| r.unwrap()).collect();
    // Every race had exactly one winner.
    for k in 0..SHARED {
        let n = reports.iter().filter(|r| r.won_rename.contains(&k)).count();
        assert_eq!(n, 1, "rename of d0/shared{k} succeeded {n} times");
        let n = reports.iter().filter(|r| r.won_create.contains(&k)).count();
        assert_eq!(n, 1, "O_EXCL create of d3/race{k} succeeded {n} times");
        let n = reports.iter().filter(|r| r.won_mkdir.contains(&k)).count();
        assert_eq!(n, 1, "mkdir d0/rdir{k} succeeded {n} times");
    }
    for k in 0..LOWER_FILES {
        let n = reports.iter().filter(|r| r.won_unlink.contains(&k)).count();
        assert_eq!(n, 1, "unlink of d1/l{k} succeeded {n} times");
    }
    m = Arc::try_unwrap(shared).unwrap_or_else(|_| panic!("worker still holds the mount"));
    check_state(&m, &reports, "after the threads");
    assert_eq!(m.stat("d2/l0").unwrap().perm, 0o600);
    m.remount();
    check_state(&m, &reports, "after remount");
    let distinct: BTreeSet<u64> = actual_state(&m).keys().map(|p| m.ino(p).unwrap()).collect();
    assert_eq!(
        distinct.len(),
        actual_state(&m).len(),
        "two entries share an st_ino"
    );
}

/// Many threads opening the same lower files at once, half read-only, half for writing
/// (the first writer copies the file up; readers may open the lower copy before that and
/// the upper copy after), as root where FUSE passthrough is on: the kernel fails an open
/// with EIO when one inode has a passed-through handle and a page-cache handle at once,
/// so the daemon's choice for concurrent opens of one inode must be one decision. No open
/// may fail, every read must see the file's bytes (the writers write back what is there),
/// before and after a remount.
#[test]
fn concurrent_opens_of_one_file_agree_on_passthrough() {
    use std::sync::Barrier;
    use strata_tests::delta::{write_lower, DeltaMount};
    const FILES: usize = 250;
    const OPENERS: usize = 8;
    const ROUNDS: usize = 24;
    const LEN: usize = 16 << 10;
    let mut m = DeltaMount::new("passthrough-opens", "nodelta");
    let contents: Vec<Vec<u8>> = (0..FILES)
        .map(|i| write_lower(&m.lower.join(format!("f{i}")), 40 + i as u64, LEN as u64))
        .collect();
    m.mount();
    let contents = Arc::new(contents);
    let (tx, rx) = mpsc::channel();
    let barrier = Arc::new(Barrier::new(OPENERS));
    for t in 0..OPENERS {
        let (tx, barrier, contents) = (tx.clone(), barrier.clone(), contents.clone());
        let mnt = m.mnt.clone();
        std::thread::spawn(move || {
            let mut problems = Vec::new();
            for (i, want) in contents.iter().enumerate() {
                // All openers start on file i together.
                barrier.wait();
                let p = mnt.join(format!("f{i}"));
                // One writer per file (the first copies it up); the others open it
                // read-only over and over meanwhile, some of them before the copy-up.
                let writer = t == i % OPENERS;
                for round in 0..if writer { 2 } else { ROUNDS } {
                    let flags = if writer { libc::O_RDWR } else { libc::O_RDONLY };
                    let fd = match sys::open(&p, flags, 0) {
                        Ok(fd) => fd,
                        Err(e) => {
                            problems.push(format!(
                                "f{i} thread {t} round {round}: open(writer={writer}): {e}"
                            ));
                            continue;
                        }
                    };
                    if writer || round % 8 == 0 {
                        match sys::pread(&fd, LEN, 0) {
                            Ok(got) if got == *want => {}
                            Ok(_) => problems.push(format!("f{i} thread {t}: reads wrong bytes")),
                            Err(e) => problems.push(format!("f{i} thread {t}: read: {e}")),
                        }
                    }
                    if writer {
                        let at = (t * 1024) % LEN;
                        if let Err(e) = sys::pwrite_all(&fd, &want[at..at + 1024], at as u64) {
                            problems.push(format!("f{i} thread {t}: write: {e}"));
                        }
                    }
                }
            }
            let _ = tx.send(problems);
        });
    }
    drop(tx);
    let deadline = std::time::Instant::now() + watchdog();
    let mut problems = Vec::new();
    for _ in 0..OPENERS {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(p) => problems.extend(p),
            Err(_) => {
                let _ = sys::umount2(&m.mnt, libc::MNT_DETACH);
                panic!(
                    "watchdog: the openers did not finish within {:?}",
                    watchdog()
                );
            }
        }
    }
    let shown: Vec<&String> = problems.iter().take(20).collect();
    assert!(
        problems.is_empty(),
        "{} of {} opens or reads failed:\n{shown:#?}\n{}",
        problems.len(),
        FILES * OPENERS * ROUNDS,
        m.log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    m.remount();
    for (i, want) in contents.iter().enumerate() {
        let got = std::fs::read(m.p(&format!("f{i}"))).unwrap();
        assert!(got == *want, "f{i} reads wrong after remount");
    }
    m.unmount();
}
