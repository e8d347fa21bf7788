//! Concurrent access to one delta file (BRIEF §3; issue 3): writer threads, each owning
//! every 4th 4 KiB piece of the first 60% of a lower file, write through their own
//! descriptors (whole pieces and unaligned ranges inside them, so blocks are filled from
//! below while other threads claim blocks of the same map) while reader threads read
//! through plain and O_DIRECT descriptors and reopen the file over and over. The last 40%
//! must read as the lower file all along; at the end (and after a remount) the file must
//! be exactly what the writers wrote; `strata fsck` clean. With 4K blocks the delta is
//! compacted in the middle of it all; with 64K blocks and compact_ratio=1.0 it stays one
//! and the threads share blocks. A large delta is compacted by the background worker while
//! the threads go on, and a write that queues a compaction does not do the copy itself.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use strata_tests::delta::{first_diff, pattern, write_lower, DeltaMount};
use strata_tests::{seeds, sys, Rng};

const PIECE: usize = 4096;
const WRITERS: usize = 4;
const SIZE: usize = 4 << 20;

fn ops() -> usize {
    std::env::var("STRATA_DELTA_OPS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map(|n| (n / 20).max(100))
        .unwrap_or(1500)
}

fn run(test: &str, extra: &str) {
    run_sized(test, extra, SIZE, false);
}

/// `run` over a lower file of `size` bytes; with `background`, the delta must have been
/// handed to the background compaction worker by the end, and be whole after it.
fn run_sized(test: &str, extra: &str, size: usize, background: bool) {
    let seed = seeds(1)[0];
    eprintln!("{test}: seed {seed:#x} (STRATA_SEED={seed:#x} replays the writes; the interleaving is the scheduler's)");
    let mut m = DeltaMount::new("conc", extra);
    let lower = Arc::new(write_lower(&m.lower.join("f.img"), seed ^ 1, size as u64));
    m.mount();
    let path = m.p("f.img");
    let hot = size * 6 / 10 / PIECE;
    let stop = Arc::new(AtomicBool::new(false));
    let n = ops();
    // The readers start once every writer has its descriptor (opening for writing while
    // a read-only descriptor is open is its own test below).
    let opened = Arc::new(std::sync::Barrier::new(WRITERS + 1));
    let mut writers = Vec::new();
    for t in 0..WRITERS {
        let (path, lower, opened) = (path.clone(), lower.clone(), opened.clone());
        writers.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ (t as u64 + 100));
            let fd = sys::open(&path, libc::O_RDWR, 0).expect("open writer");
            opened.wait();
            // This thread's view of its own pieces.
            let mut mine: Vec<(usize, Vec<u8>)> = Vec::new();
            for _ in 0..n {
                let piece = (rng.below((hot / WRITERS) as u64) as usize) * WRITERS + t;
                let (off, len) = if rng.chance(50) {
                    (0, PIECE)
                } else {
                    let a = rng.below(PIECE as u64 - 1) as usize;
                    (a, 1 + rng.below((PIECE - a) as u64) as usize)
                };
                let data = pattern(rng.next_u64(), 0, len);
                let at = piece * PIECE + off;
                sys::pwrite_all(&fd, &data, at as u64)
                    .unwrap_or_else(|e| panic!("writer {t}: pwrite({at}, {len}): {e}"));
                let i = match mine.iter().position(|(p, _)| *p == piece) {
                    Some(i) => i,
                    None => {
                        mine.push((piece, lower[piece * PIECE..(piece + 1) * PIECE].to_vec()));
                        mine.len() - 1
                    }
                };
                mine[i].1[off..off + len].copy_from_slice(&data);
                if rng.chance(3) {
                    sys::fsync(&fd).unwrap_or_else(|e| panic!("writer {t}: fsync: {e}"));
                }
            }
            mine
        }));
    }
    opened.wait();
    let mut readers = Vec::new();
    for r in 0..3 {
        let (path, lower, stop) = (path.clone(), lower.clone(), stop.clone());
        readers.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ (r as u64 + 200));
            let mut reads = 0usize;
            while !stop.load(Ordering::Relaxed) {
                // Reader 2 opens the file anew for every read (opens racing with the
                // writers' claims and with compaction); the others keep theirs.
                let flags = if r == 1 {
                    libc::O_RDONLY | libc::O_DIRECT
                } else {
                    libc::O_RDONLY
                };
                let fd =
                    sys::open(&path, flags, 0).unwrap_or_else(|e| panic!("reader {r}: open: {e}"));
                for _ in 0..if r == 2 { 1 } else { 200 } {
                    let cold = rng.chance(50);
                    let start = if cold { hot * PIECE } else { 0 };
                    let span = if cold {
                        size - hot * PIECE
                    } else {
                        hot * PIECE
                    };
                    let off = start + (rng.below((span / PIECE) as u64) as usize) * PIECE;
                    let len = (PIECE * (1 + rng.below(16) as usize)).min(start + span - off);
                    let got = read_aligned(&fd, off, len)
                        .unwrap_or_else(|e| panic!("reader {r}: pread({off}, {len}): {e}"));
                    assert_eq!(got.len(), len, "reader {r}: short read at {off}");
                    if cold {
                        if let Some(d) = first_diff(&lower[off..off + len], &got) {
                            panic!("reader {r}: never-written bytes at {off} read wrong: {d}");
                        }
                    }
                    reads += 1;
                }
            }
            reads
        }));
    }
    // Stop the readers however this ends (a failed join panics before the store below).
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_readers = StopOnDrop(stop.clone());
    let mut want = lower.to_vec();
    for w in writers {
        for (piece, data) in w.join().expect("writer panicked") {
            want[piece * PIECE..(piece + 1) * PIECE].copy_from_slice(&data);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reads: usize = readers
        .into_iter()
        .map(|r| r.join().expect("reader panicked"))
        .sum();
    let got = std::fs::read(&path).unwrap();
    if let Some(d) = first_diff(&want, &got) {
        panic!("{test}: seed {seed:#x}: after the threads: {d}");
    }
    if background {
        let queued = m.compactions("queued");
        assert!(
            queued.is_some_and(|q| q >= 1),
            "{test}: no background compaction was queued (stats: {queued:?})"
        );
        assert!(
            m.wait_compactions(),
            "{test}: compaction still pending after 120 s"
        );
        assert_eq!(
            m.compactions("failed"),
            Some(0),
            "{test}: a compaction failed:\n{}",
            m.log()
        );
        assert_eq!(
            m.whence_origin("f.img"),
            "upper",
            "{test}: not whole after compaction"
        );
        let got = std::fs::read(&path).unwrap();
        if let Some(d) = first_diff(&want, &got) {
            panic!("{test}: seed {seed:#x}: after the compaction: {d}");
        }
    }
    m.remount();
    let got = std::fs::read(&path).unwrap();
    if let Some(d) = first_diff(&want, &got) {
        panic!("{test}: seed {seed:#x}: after remount: {d}");
    }
    m.unmount();
    let (ok, out) = m.fsck(false);
    assert!(ok, "{test}: fsck:\n{out}");
    eprintln!(
        "{test}: {} writes, {reads} reads, delta at the end: {}",
        n * WRITERS,
        m.meta("f.img").is_some_and(|v| v.contains("\ndelta "))
    );
}

/// pread into a page-aligned buffer (works for O_DIRECT and plain descriptors).
fn read_aligned(
    fd: &std::os::fd::OwnedFd,
    off: usize,
    len: usize,
) -> Result<Vec<u8>, nix::errno::Errno> {
    let layout = std::alloc::Layout::from_size_align(len.max(1), 4096).unwrap();
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!ptr.is_null());
    let mut done = 0;
    let res = loop {
        if done >= len {
            break Ok(());
        }
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                ptr.add(done).cast(),
                len - done,
                (off + done) as libc::off_t,
            )
        };
        if n < 0 {
            break Err(nix::errno::Errno::last());
        }
        if n == 0 {
            break Ok(());
        }
        done += n as usize;
    };
    let v = unsafe { std::slice::from_raw_parts(ptr, done) }.to_vec();
    unsafe { std::alloc::dealloc(ptr, layout) };
    res.map(|()| v)
}

#[test]
fn concurrent_block4k_compacts() {
    run("concurrent_block4k_compacts", "");
}

#[test]
fn concurrent_block64k_stays_delta() {
    run(
        "concurrent_block64k_stays_delta",
        "delta_block=64K,compact_ratio=1.0",
    );
}

/// Opening a lower file for writing while a read-only descriptor of it is open (a big
/// file that becomes a delta, and a small one copied whole): both work, and the
/// read-only descriptor keeps reading.
#[test]
fn open_for_write_while_open_read_only() {
    let mut m = DeltaMount::new("rw-while-ro", "");
    let big = write_lower(&m.lower.join("big.img"), 1, 2 << 20);
    let small = write_lower(&m.lower.join("small.img"), 2, 2000);
    m.mount();
    let mut problems = Vec::new();
    for (name, lower) in [("big.img", &big), ("small.img", &small)] {
        let ro = sys::open(&m.p(name), libc::O_RDONLY, 0).unwrap();
        match sys::open(&m.p(name), libc::O_RDWR, 0) {
            Ok(rw) => {
                sys::pwrite_all(&rw, b"new", 100).unwrap();
                let mut want = lower.clone();
                want[100..103].copy_from_slice(b"new");
                let got = std::fs::read(m.p(name)).unwrap();
                if got != want {
                    problems.push(format!("{name}: reads wrong after the write"));
                }
            }
            Err(e) => problems.push(format!(
                "{name} ({} bytes): open O_RDWR while an O_RDONLY descriptor is open: {e}",
                lower.len()
            )),
        }
        if let Err(e) = sys::pread(&ro, 10, 0) {
            problems.push(format!("{name}: the read-only descriptor fails after: {e}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    m.unmount();
}

/// The first write into each of many big lower files, read back through a new descriptor,
/// while other threads list the directory and stat its files over and over (readdirplus
/// and lookups resolving the same files meanwhile). A resolution taken before the file
/// became a delta set its node back to a plain metadata copy, and the read after the write
/// returned the lower bytes (found by runtime/tests/load.rs).
#[test]
fn first_write_reads_back_while_the_directory_is_listed() {
    const FILES: usize = 60;
    let mut m = DeltaMount::new("first-write-listed", "");
    for i in 0..FILES {
        write_lower(&m.lower.join(format!("f{i}")), i as u64, (1 << 20) + 4096);
    }
    m.mount();
    let stop = Arc::new(AtomicBool::new(false));
    let listers: Vec<_> = (0..3)
        .map(|_| {
            let (dir, stop) = (m.mnt.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                        let _ = e.metadata();
                        let _ = std::fs::metadata(e.path());
                    }
                }
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for i in 0..FILES {
        let p = m.p(&format!("f{i}"));
        let data = pattern(1000 + i as u64, 0, 64);
        let fd = sys::open(&p, libc::O_WRONLY, 0).unwrap();
        sys::pwrite_all(&fd, &data, 128).unwrap();
        drop(fd);
        let fd = sys::open(&p, libc::O_RDONLY, 0).unwrap();
        if sys::pread(&fd, 64, 128).unwrap() != data {
            wrong.push(format!("f{i}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for l in listers {
        l.join().expect("lister panicked");
    }
    assert!(
        wrong.is_empty(),
        "the 64 bytes just written read as the lower file's in {} of {FILES} files: {wrong:?}",
        wrong.len()
    );
    m.unmount();
}

/// A 48 MiB delta queued for compaction after 1% of its blocks were written: the worker
/// copies the rest while four writers go on claiming blocks and readers read (the file's
/// cold 40% must read as the lower file all along). Every write made during the copy
/// ends up in the whole file, before and after a remount.
#[test]
fn concurrent_background_compaction_of_a_large_delta() {
    run_sized(
        "concurrent_background_compaction_of_a_large_delta",
        "compact_ratio=0.01",
        48 << 20,
        true,
    );
}

/// The write that takes a 64 MiB delta past compact_ratio queues the compaction instead
/// of copying the other 63 MiB itself: right after it returns, the stats show one
/// compaction queued; more writes go on meanwhile; once the worker is done the file is a
/// whole upper file with every write in it, also after a remount; fsck clean.
#[test]
fn write_that_triggers_compaction_queues_it() {
    let mut m = DeltaMount::new("compact-queued", "compact_ratio=0.01");
    let size: usize = 64 << 20;
    let lower = write_lower(&m.lower.join("big.img"), 9, size as u64);
    m.mount();
    let total = size / PIECE;
    // Past 1% of the blocks: this many single-block writes queue it.
    let trigger = total / 100 + 1;
    let fd = sys::open(&m.p("big.img"), libc::O_RDWR, 0).unwrap();
    let mut want = lower.to_vec();
    let mut write = |i: usize| {
        let blk = (i * 7919) % total;
        let data = pattern(5000 + i as u64, 0, PIECE);
        sys::pwrite_all(&fd, &data, (blk * PIECE) as u64).unwrap();
        want[blk * PIECE..(blk + 1) * PIECE].copy_from_slice(&data);
    };
    for i in 0..trigger - 1 {
        write(i);
    }
    assert_eq!(m.whence_origin("big.img"), "delta");
    assert_eq!(
        m.compactions("queued"),
        Some(0),
        "no compaction counters in the stats, or a compaction queued before the file reached compact_ratio"
    );
    write(trigger - 1);
    assert_eq!(
        m.compactions("queued"),
        Some(1),
        "the write that took the delta past compact_ratio did not queue a background compaction"
    );
    // Writes while the worker copies (or after it finished) are kept.
    for i in trigger..trigger + 50 {
        write(i);
    }
    drop(fd);
    assert!(m.wait_compactions(), "compaction still pending after 120 s");
    assert_eq!(m.compactions("done"), Some(1), "{}", m.log());
    assert_eq!(m.whence_origin("big.img"), "upper");
    let got = std::fs::read(m.p("big.img")).unwrap();
    if let Some(d) = first_diff(&want, &got) {
        panic!("after the compaction: {d}");
    }
    m.remount();
    let got = std::fs::read(m.p("big.img")).unwrap();
    if let Some(d) = first_diff(&want, &got) {
        panic!("after remount: {d}");
    }
    m.unmount();
    assert!(
        m.meta("big.img").is_none_or(|v| !v.contains("\ndelta ")),
        "still a delta record after the compaction"
    );
    let (ok, out) = m.fsck(false);
    assert!(ok, "fsck:\n{out}");
}
