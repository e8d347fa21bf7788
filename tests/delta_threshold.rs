//! When a written lower file becomes a delta and when it is copied whole (BRIEF §3; issue
//! 3): files below `delta_threshold` are copied whole, `nodelta` copies everything whole,
//! `strata compact` and automatic compaction make a delta whole, and a file made whole
//! while a descriptor of it is open can still be opened and read again.

use strata_tests::delta::{meta_line, pattern, write_lower, DeltaMount};
use strata_tests::{sys, Errno};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Write 4 KiB at block 3 of `name` through the mount; returns the expected content.
fn write_block(m: &DeltaMount, name: &str, lower: &[u8]) -> Vec<u8> {
    let data = pattern(42, 0, 4096);
    let fd = sys::open(&m.p(name), libc::O_WRONLY, 0).unwrap();
    sys::pwrite_all(&fd, &data, 3 * 4096).unwrap();
    let mut want = lower.to_vec();
    want[3 * 4096..4 * 4096].copy_from_slice(&data);
    want
}

fn read(m: &DeltaMount, name: &str) -> Result<Vec<u8>, Errno> {
    let fd = sys::open(&m.p(name), libc::O_RDONLY, 0)?;
    sys::read_all(&fd)
}

fn is_delta(m: &DeltaMount, name: &str) -> bool {
    m.meta(name)
        .is_some_and(|v| meta_line(&v, "delta").is_some())
}

/// Whole: no delta record and the whole size allocated in the upper.
fn assert_whole(m: &DeltaMount, name: &str, size: u64, what: &str) {
    let meta = m.meta(name).unwrap_or_default();
    assert!(
        meta_line(&meta, "delta").is_none() && meta_line(&meta, "data").is_none(),
        "{what}: {name} ({size} bytes) should have been copied whole, its record is {meta:?}"
    );
    let alloc = m.upper_allocated(name);
    assert!(
        alloc >= size / 4096 * 4096,
        "{what}: the whole copy of {name} allocates {alloc} bytes for {size}"
    );
}

fn assert_delta(m: &DeltaMount, name: &str, what: &str) {
    let meta = m.meta(name).unwrap_or_default();
    assert!(
        meta_line(&meta, "delta").is_some(),
        "{what}: {name} should be a delta, its record is {meta:?}"
    );
    let alloc = m.upper_allocated(name);
    assert!(
        alloc <= 64 * KIB,
        "{what}: the delta {name} allocates {alloc} bytes"
    );
}

/// Default threshold (1M): a smaller file is copied whole, one at the threshold and a
/// bigger one become deltas; both read right before and after a remount; fsck clean.
#[test]
fn default_threshold() {
    let mut m = DeltaMount::new("thr", "");
    let files = [
        ("small.img", 512 * KIB, false),
        ("just-below.img", MIB - 1, false),
        ("at.img", MIB, true),
        ("big.img", 3 * MIB + 5, true),
    ];
    let lowers: Vec<Vec<u8>> = files
        .iter()
        .enumerate()
        .map(|(i, (n, s, _))| write_lower(&m.lower.join(n), i as u64, *s))
        .collect();
    m.mount();
    let want: Vec<Vec<u8>> = files
        .iter()
        .zip(&lowers)
        .map(|((n, _, _), l)| write_block(&m, n, l))
        .collect();
    for ((n, _, _), w) in files.iter().zip(&want) {
        assert!(read(&m, n).unwrap() == *w, "{n} reads wrong");
    }
    m.remount();
    for ((n, size, delta), w) in files.iter().zip(&want) {
        assert!(read(&m, n).unwrap() == *w, "{n} reads wrong after remount");
        if *delta {
            assert_delta(&m, n, "default threshold");
        } else {
            assert_whole(&m, n, *size, "default threshold");
        }
    }
    m.unmount();
    let (ok, out) = m.fsck(false);
    assert!(ok, "fsck:\n{out}");
}

/// delta_threshold=64K makes a 512K file a delta; delta_threshold=4M copies a 3M file whole.
#[test]
fn threshold_option() {
    for (opt, size, delta) in [
        ("delta_threshold=64K", 512 * KIB, true),
        ("delta_threshold=4M", 3 * MIB, false),
    ] {
        let mut m = DeltaMount::new("thropt", opt);
        let lower = write_lower(&m.lower.join("f.img"), 5, size);
        m.mount();
        let want = write_block(&m, "f.img", &lower);
        m.remount();
        assert!(
            read(&m, "f.img").unwrap() == want,
            "{opt}: f.img reads wrong"
        );
        if delta {
            assert_delta(&m, "f.img", opt);
        } else {
            assert_whole(&m, "f.img", size, opt);
        }
        m.unmount();
    }
}

/// nodelta: even an 8 MiB file is copied whole.
#[test]
fn nodelta_copies_whole() {
    let mut m = DeltaMount::new("nodelta", "nodelta");
    let lower = write_lower(&m.lower.join("f.img"), 6, 8 * MIB);
    m.mount();
    let want = write_block(&m, "f.img", &lower);
    m.remount();
    assert!(read(&m, "f.img").unwrap() == want, "f.img reads wrong");
    assert_whole(&m, "f.img", 8 * MIB, "nodelta");
    m.unmount();
}

/// `strata compact PATH` makes a delta whole: same bytes, no delta record, fsck clean.
#[test]
fn compact_command() {
    let mut m = DeltaMount::new("compact", "");
    let lower = write_lower(&m.lower.join("f.img"), 7, 2 * MIB);
    m.mount();
    let want = write_block(&m, "f.img", &lower);
    assert!(is_delta(&m, "f.img"), "not a delta after one write");
    let out = std::process::Command::new(strata_tests::strata_bin())
        .arg("compact")
        .arg(m.p("f.img"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "strata compact failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_whole(&m, "f.img", 2 * MIB, "after strata compact");
    assert!(
        read(&m, "f.img").unwrap() == want,
        "f.img reads wrong after compact"
    );
    m.remount();
    assert!(
        read(&m, "f.img").unwrap() == want,
        "f.img reads wrong after compact + remount"
    );
    // A lower change now does not matter: the file is whole.
    std::fs::write(m.lower.join("f.img"), b"changed").unwrap();
    assert!(
        read(&m, "f.img").unwrap() == want,
        "the whole copy depends on the lower file"
    );
    m.unmount();
    let (ok, out) = m.fsck(false);
    assert!(ok, "fsck after compact:\n{out}");
}

/// A delta made whole while a descriptor of it is open (by `strata compact`, or by
/// writing more than compact_ratio of its blocks): opening the file again, while the
/// first descriptor is still open, works and reads the right bytes.
fn reopen_after_whole(by_command: bool) {
    let mut m = DeltaMount::new("reopen", "");
    let size = 2 * MIB;
    let lower = write_lower(&m.lower.join("f.img"), 8, size);
    m.mount();
    let fd = sys::open(&m.p("f.img"), libc::O_RDWR, 0).unwrap();
    let mut want = lower.clone();
    let blocks = if by_command { 1 } else { size / 4096 * 3 / 4 };
    for b in 0..blocks {
        let data = pattern(b, b * 4096, 4096);
        sys::pwrite_all(&fd, &data, b * 4096).unwrap();
        want[(b * 4096) as usize..((b + 1) * 4096) as usize].copy_from_slice(&data);
    }
    if by_command {
        assert!(is_delta(&m, "f.img"), "not a delta after one write");
        let st = std::process::Command::new(strata_tests::strata_bin())
            .arg("compact")
            .arg(m.p("f.img"))
            .status()
            .unwrap();
        assert!(st.success(), "strata compact failed");
    }
    // Automatic compaction runs on a background worker after the write that crossed
    // `compact_ratio`: wait (bounded) for it to finish.
    let whole = strata_tests::mount::wait_until(std::time::Duration::from_secs(60), || {
        !is_delta(&m, "f.img")
    });
    assert!(whole, "the delta was not made whole");
    let again = read(&m, "f.img");
    let through_first = sys::pread(&fd, size as usize, 0);
    drop(fd);
    let after_close = read(&m, "f.img");
    assert!(
        matches!(&again, Ok(v) if *v == want),
        "a delta made whole ({}) while a descriptor is open: opening it again fails or reads wrong: {:?} (through the open descriptor: {:?}; after closing it: {:?})",
        if by_command { "strata compact" } else { "automatic compaction" },
        again.as_ref().map(|v| v.len()),
        through_first.as_ref().map(|v| v == &want),
        after_close.as_ref().map(|v| v == &want),
    );
    m.unmount();
}

#[test]
fn reopen_after_compact_command() {
    reopen_after_whole(true);
}

#[test]
fn reopen_after_automatic_compaction() {
    reopen_after_whole(false);
}

/// A delta whose origin is in the second lower branch (`data +2 PATH`: two layers below the upper): reads right
/// before and after remount, fsck with both branches clean; changing that lower file is
/// reported by fsck and answered with EIO.
#[test]
fn origin_in_deeper_branch() {
    let mut m = DeltaMount::new("deep", "");
    let lower = write_lower(&m.lower2.join("d/deep.img"), 9, 3 * MIB);
    write_lower(&m.lower.join("d/top.txt"), 10, 100);
    m.mount();
    let want = write_block(&m, "d/deep.img", &lower);
    assert!(
        read(&m, "d/deep.img").unwrap() == want,
        "deep.img reads wrong"
    );
    m.remount();
    assert!(
        read(&m, "d/deep.img").unwrap() == want,
        "deep.img reads wrong after remount"
    );
    let meta = m.meta("d/deep.img").unwrap_or_default();
    assert!(
        meta_line(&meta, "delta").is_some() && meta_line(&meta, "data") == Some("+2 d/deep.img"),
        "record {meta:?}"
    );
    m.unmount();
    let (ok, out) = m.fsck(false);
    assert!(ok, "fsck:\n{out}");
    std::fs::OpenOptions::new()
        .append(true)
        .open(m.lower2.join("d/deep.img"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"more"))
        .unwrap();
    let (ok, out) = m.fsck(false);
    assert!(
        !ok && out.contains("deep.img"),
        "fsck misses the changed deep origin:\n{out}"
    );
    m.mount();
    assert_eq!(
        read(&m, "d/deep.img").err(),
        Some(Errno::EIO),
        "changed deep origin"
    );
    assert!(read(&m, "d/top.txt").is_ok(), "the other file");
    m.unmount();
}

/// A delta overwritten from start to end has nothing left below: it becomes whole at the
/// write that claims its last block, with no compaction (compact_ratio=1.0 never asks for
/// one) and no copy from below, and reads right before and after a remount.
#[test]
fn a_delta_overwritten_in_full_becomes_whole_at_once() {
    let mut m = DeltaMount::new("full", "compact_ratio=1.0");
    let size = 3 * MIB + 5;
    let lower = write_lower(&m.lower.join("big.img"), 3, size);
    m.mount();
    write_block(&m, "big.img", &lower);
    assert_delta(&m, "big.img", "after a 4 KiB write");
    let data = pattern(77, 0, size as usize);
    let fd = sys::open(&m.p("big.img"), libc::O_WRONLY, 0).unwrap();
    // Up to the last block: still a delta (its last bytes come from below).
    sys::pwrite_all(&fd, &data[..(size - 4096) as usize], 0).unwrap();
    assert!(is_delta(&m, "big.img"), "a delta with a block left below");
    sys::pwrite_all(&fd, &data[(size - 4096) as usize..], size - 4096).unwrap();
    assert!(
        !is_delta(&m, "big.img"),
        "overwritten in full but still a delta: {:?}",
        m.meta("big.img")
    );
    drop(fd);
    assert_eq!(m.compactions("queued"), Some(0), "no compaction was needed");
    assert!(read(&m, "big.img").unwrap() == data, "reads wrong");
    m.remount();
    assert_whole(&m, "big.img", size, "after remount");
    assert!(
        read(&m, "big.img").unwrap() == data,
        "reads wrong after remount"
    );
    m.unmount();
    let (ok, out) = m.fsck(false);
    assert!(ok, "fsck:\n{out}");
}
