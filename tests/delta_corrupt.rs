//! Hostile and damaged deltas (BRIEF §3, §7; issue 3): an origin changed underneath, corrupt
//! block-map records, a map claiming blocks past the end of the file. strata must answer
//! EIO (never silently wrong bytes), say so in its log naming the file, keep serving
//! every other file, and `strata fsck` must report (and where safe, repair) the damage.

use std::path::Path;
use strata_tests::delta::{meta_line, pattern, write_lower, DeltaMount, META_XATTR};
use strata_tests::{sys, Errno};

const KIB: u64 = 1024;

/// Read a whole file through the mount: Ok(bytes) or the errno of open or read.
fn read(p: &Path) -> Result<Vec<u8>, Errno> {
    let fd = sys::open(p, libc::O_RDONLY, 0)?;
    sys::read_all(&fd)
}

/// Write one 4 KiB block at `blk` through the mount; returns the expected file content.
fn make_delta(m: &DeltaMount, name: &str, lower: &[u8], blk: u64, seed: u64) -> Vec<u8> {
    let data = pattern(seed, 0, 4096);
    let fd = sys::open(&m.p(name), libc::O_WRONLY, 0).unwrap();
    sys::pwrite_all(&fd, &data, blk * 4096).unwrap();
    let mut want = lower.to_vec();
    want[(blk * 4096) as usize..(blk * 4096 + 4096) as usize].copy_from_slice(&data);
    want
}

fn set_meta(m: &DeltaMount, name: &str, value: &[u8]) {
    sys::lsetxattr(&m.upper.join(name), META_XATTR, value, 0)
        .unwrap_or_else(|e| panic!("setxattr upper {name}: {e}"));
}

/// The mount is alive and serves an untouched file right.
fn alive(m: &DeltaMount, other: &[u8]) -> Result<(), String> {
    if m.daemon_pids().is_empty() {
        return Err("the daemon is gone".into());
    }
    sys::stat(&m.mnt).map_err(|e| format!("stat of the mount root: {e}"))?;
    let got = read(&m.p("other.img")).map_err(|e| format!("reading an untouched file: {e}"))?;
    if got != other {
        return Err("the untouched file reads wrong".into());
    }
    Ok(())
}

fn assert_alive(m: &DeltaMount, other: &[u8], what: &str) {
    if let Err(e) = alive(m, other) {
        panic!("{what}: {e}\n{}", m.log());
    }
}

/// The lower file changed after the delta was made (touched, rewritten in place,
/// replaced by another inode, deleted): EIO with a log line naming the file; the others
/// keep working; fsck --lowerdir reports each one and exits non-zero.
#[test]
fn origin_changed_underneath() {
    let mut m = DeltaMount::new("origin", "delta_threshold=64K");
    let size = 512 * KIB;
    let names = [
        "touched.img",
        "rewritten.img",
        "replaced.img",
        "deleted.img",
        "kept.img",
    ];
    let lowers: Vec<Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| write_lower(&m.lower.join(n), 100 + i as u64, size))
        .collect();
    let other = write_lower(&m.lower.join("other.img"), 7, 256 * KIB);
    m.mount();
    let want: Vec<Vec<u8>> = names
        .iter()
        .zip(&lowers)
        .map(|(n, l)| make_delta(&m, n, l, 5, 1))
        .collect();
    m.unmount();
    for n in names {
        let meta = m.meta(n).unwrap_or_default();
        assert!(
            meta_line(&meta, "delta").is_some(),
            "{n} is not a delta: {meta:?}"
        );
    }
    let (ok, out) = m.fsck(false);
    assert!(ok, "fsck before any change is not clean:\n{out}");

    // touch: only the mtime changes.
    let t = m.lower.join("touched.img");
    sys::lutimens(&t, (1_700_000_000, 0), (1_700_000_000, 5)).unwrap();
    // Same size, new bytes, in place (same inode).
    let r = m.lower.join("rewritten.img");
    let fd = sys::open(&r, libc::O_WRONLY, 0).unwrap();
    sys::pwrite_all(&fd, &pattern(99, 0, 4096), 40960).unwrap();
    drop(fd);
    // Replaced by a file of the same size and mtime, but another inode.
    let p = m.lower.join("replaced.img");
    let st = sys::stat(&p).unwrap();
    let tmp = m.lower.join("replaced.tmp");
    std::fs::write(&tmp, &lowers[2]).unwrap();
    sys::lutimens(
        &tmp,
        (st.st_atime, st.st_atime_nsec),
        (st.st_mtime, st.st_mtime_nsec),
    )
    .unwrap();
    std::fs::rename(&tmp, &p).unwrap();
    std::fs::remove_file(m.lower.join("deleted.img")).unwrap();

    let (ok, out) = m.fsck(false);
    assert!(
        !ok,
        "fsck --lowerdir exits 0 although four origins changed:\n{out}"
    );
    for n in &names[..4] {
        assert!(out.contains(n), "fsck does not report {n}:\n{out}");
    }
    assert!(
        !out.contains("kept.img"),
        "fsck reports the intact kept.img:\n{out}"
    );

    m.mount();
    for n in &names[..4] {
        let r = read(&m.p(n));
        assert_eq!(
            r.as_ref().err(),
            Some(&Errno::EIO),
            "reading {n} (its lower file changed underneath) must fail with EIO, got {}",
            match &r {
                Ok(v) => format!("{} bytes", v.len()),
                Err(e) => e.to_string(),
            }
        );
        assert_alive(&m, &other, &format!("after reading {n}"));
    }
    let log = m.log();
    for n in &names[..4] {
        assert!(
            log.lines()
                .any(|l| l.contains(n) && (l.contains("ERROR") || l.contains("error"))),
            "no error line in the daemon log names {n}:\n{log}"
        );
    }
    let kept = read(&m.p("kept.img")).expect("read kept.img");
    assert!(kept == want[4], "the intact delta kept.img reads wrong");
    assert_alive(&m, &other, "at the end");
    m.unmount();
}

/// The corruptions to apply to a delta's record (name, new value from the good one).
fn corruptions(good: &str) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = Vec::new();
    v.push((
        "garbage".into(),
        b"\x89STRATA\x00\xff\xfe garbage\x01\x02 \x7f\n\xc3\x28 zz".to_vec(),
    ));
    v.push((
        "text-garbage".into(),
        b"hello world\nthis is not a record\n".to_vec(),
    ));
    v.push(("empty".into(), Vec::new()));
    v.push((
        "unknown-version".into(),
        good.replace("delta 1 ", "delta 9 ").into_bytes(),
    ));
    v.push((
        "blocks-out-of-order".into(),
        good.lines()
            .map(|l| {
                if l.starts_with("blocks ") {
                    "blocks 10-12,3-5".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes(),
    ));
    v.push((
        "blocks-overlapping".into(),
        good.lines()
            .map(|l| {
                if l.starts_with("blocks ") {
                    "blocks 3-6,5-8".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes(),
    ));
    v.push((
        "bad-block-size".into(),
        good.replace("delta 1 4096 ", "delta 1 0 ").into_bytes(),
    ));
    // Block sizes the mount option refuses (a power of two from 512 to 16M): a huge one
    // made a 4 KiB write fill, and a read span, up to the whole file.
    for (what, size) in [
        ("block-size-1", "1"),
        ("block-size-256", "256"),
        ("block-size-4097", "4097"),
        ("block-size-32M", "33554432"),
        ("block-size-huge", "1099511627776"),
        ("block-size-u64-max", "18446744073709551615"),
    ] {
        v.push((
            what.into(),
            good.replace("delta 1 4096 ", &format!("delta 1 {size} "))
                .into_bytes(),
        ));
    }
    v.push((
        "no-data-line".into(),
        good.lines()
            .filter(|l| !l.starts_with("data "))
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes(),
    ));
    // Truncated values: every length from 1 to the whole value minus its last newline.
    let b = good.as_bytes();
    for cut in 1..b.len().saturating_sub(1) {
        v.push((format!("truncated-{cut}"), b[..cut].to_vec()));
    }
    v
}

/// Damaged records: reading each file is EIO (or, where the damage left a complete
/// record, the right bytes), never other bytes; the daemon keeps serving everything
/// else; fsck reports every file that reads EIO.
#[test]
fn corrupt_records() {
    // Work out the record strata writes for a file like ours first.
    let size = 128 * KIB;
    let mut probe = DeltaMount::new("probe", "delta_threshold=64K");
    let lower = write_lower(&probe.lower.join("f000.img"), 0, size);
    probe.mount();
    make_delta(&probe, "f000.img", &lower, 5, 1);
    probe.unmount();
    let good = probe.meta("f000.img").expect("a delta record");
    assert!(meta_line(&good, "delta").is_some(), "not a delta: {good:?}");
    drop(probe);

    let cases = corruptions(&good);
    let mut m = DeltaMount::new("corrupt", "delta_threshold=64K");
    let mut lowers = Vec::new();
    for i in 0..cases.len() {
        lowers.push(write_lower(
            &m.lower.join(format!("f{i:03}.img")),
            i as u64,
            size,
        ));
    }
    let other = write_lower(&m.lower.join("other.img"), 7777, 256 * KIB);
    m.mount();
    let mut want = Vec::new();
    for (i, l) in lowers.iter().enumerate() {
        want.push(make_delta(
            &m,
            &format!("f{i:03}.img"),
            l,
            5,
            1000 + i as u64,
        ));
    }
    m.unmount();
    // Each file gets its case applied to its own record (own lower path and ident).
    let mut cases_own = Vec::new();
    for (i, (what, _)) in cases.iter().enumerate() {
        let name = format!("f{i:03}.img");
        let g = m.meta(&name).unwrap();
        let own = corruptions(&g);
        let value = match own.iter().find(|c| &c.0 == what) {
            Some(c) => c.1.clone(),
            // A shorter record has fewer cuts: cut it one byte before its end.
            None => g.as_bytes()[..g.len() - 2].to_vec(),
        };
        set_meta(&m, &name, &value);
        cases_own.push((what.clone(), value));
    }
    let cases = cases_own;
    let (ok, fsck_out) = m.fsck(false);
    m.mount();
    let mut wrong = Vec::new();
    let mut eio = Vec::new();
    let mut unreported = Vec::new();
    let mut dead = Vec::new();
    for (i, (what, _)) in cases.iter().enumerate() {
        let name = format!("f{i:03}.img");
        match read(&m.p(&name)) {
            Err(Errno::EIO) => {
                eio.push(what.clone());
                if !fsck_out.contains(&name) {
                    unreported.push(format!("{what} ({name})"));
                }
            }
            Ok(v) if v == want[i] => {}
            Ok(v) => wrong.push(format!(
                "{what} ({name}): {} bytes, {}",
                v.len(),
                if v.len() == want[i].len()
                    && v[20480..24576] == want[i][20480..24576]
                    && v.iter().zip(&want[i]).any(|(a, b)| a != b)
                {
                    "the written block right, other bytes wrong"
                } else if v.iter().all(|b| *b == 0) {
                    "all zeros"
                } else if v.len() == want[i].len() && v[20480..24576] != want[i][20480..24576] {
                    "the written block lost"
                } else {
                    "wrong"
                }
            )),
            Err(e) => wrong.push(format!("{what} ({name}): {e} instead of EIO")),
        }
        if let Err(e) = alive(&m, &other) {
            dead.push(format!("after reading the {what} delta ({name}): {e}"));
        }
    }
    let log = m.log();
    for what in ["unknown-version", "blocks-out-of-order", "block-size-huge"] {
        let i = cases.iter().position(|c| c.0 == what).unwrap();
        let name = format!("f{i:03}.img");
        assert!(
            log.lines().any(|l| l.contains(&name)),
            "no daemon log line names {name} ({what}):\n{log}"
        );
    }
    m.unmount();
    let show = |v: &[String]| {
        let mut s = v
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n    ");
        if v.len() > 12 {
            s.push_str(&format!("\n    ... and {} more", v.len() - 12));
        }
        s
    };
    eprintln!(
        "{} corrupt records: {} read EIO, fsck exit ok={ok}",
        cases.len(),
        eio.len()
    );
    assert!(
        wrong.is_empty() && unreported.is_empty() && dead.is_empty() && !ok,
        "damaged delta records served silently wrong data, broke the mount or went unreported:\n  silently wrong ({}):\n    {}\n  the mount stopped serving other files ({}):\n    {}\n  EIO but not reported by fsck ({}):\n    {}\n  fsck exit ok={ok}; a good record is {good:?}\nfsck said:\n{fsck_out}",
        wrong.len(),
        show(&wrong),
        dead.len(),
        show(&dead),
        unreported.len(),
        show(&unreported)
    );
}

/// A block map claiming blocks past the end of the file: fsck reports it, --repair fixes
/// it, fsck is clean after, and the file reads right all along.
#[test]
fn map_past_end_repaired() {
    let size = 128 * KIB;
    let mut m = DeltaMount::new("pastend", "delta_threshold=64K");
    let lower = write_lower(&m.lower.join("f.img"), 3, size);
    let other = write_lower(&m.lower.join("other.img"), 4, 64 * KIB);
    m.mount();
    let want = make_delta(&m, "f.img", &lower, 2, 9);
    m.unmount();
    let good = m.meta("f.img").unwrap();
    assert_eq!(meta_line(&good, "blocks"), Some("2-3"), "record {good:?}");
    let bad = good.replace("blocks 2-3", "blocks 2-3,500-510");
    set_meta(&m, "f.img", bad.as_bytes());

    let (ok, out) = m.fsck(false);
    assert!(
        !ok,
        "fsck exits 0 for a map claiming blocks past the end:\n{out}"
    );
    assert!(out.contains("f.img"), "fsck does not name f.img:\n{out}");
    let still = m.meta("f.img").unwrap();
    assert_eq!(still, bad, "fsck without --repair changed the record");

    let (ok, out) = m.fsck(true);
    assert!(ok, "fsck --repair did not fix the map:\n{out}");
    let (ok, out) = m.fsck(false);
    assert!(ok, "fsck after --repair is not clean:\n{out}");
    let fixed = m.meta("f.img").unwrap();
    assert_eq!(
        meta_line(&fixed, "blocks"),
        Some("2-3"),
        "repaired record {fixed:?}"
    );

    m.mount();
    let got = read(&m.p("f.img")).expect("read the repaired delta");
    assert!(got == want, "the repaired delta reads wrong");
    assert_alive(&m, &other, "after repair");
    // And it still works as a delta.
    let fd = sys::open(&m.p("f.img"), libc::O_WRONLY, 0).unwrap();
    sys::pwrite_all(&fd, b"again", 100).unwrap();
    drop(fd);
    m.unmount();
    let (ok, out) = m.fsck(false);
    assert!(ok, "fsck after more writes is not clean:\n{out}");
}

/// A damaged `ino` line in a delta's record (the root's inode number 1, or another
/// file's number) must not take the mount down nor change what another file reads.
fn ino_collision(root: bool) {
    let size = 128 * KIB;
    let mut m = DeltaMount::new("ino", "delta_threshold=64K");
    let a = write_lower(&m.lower.join("a.img"), 1, size);
    let other = write_lower(&m.lower.join("other.img"), 3, 64 * KIB);
    m.mount();
    let want = make_delta(&m, "a.img", &a, 1, 11);
    let other_ino = sys::stat(&m.p("other.img")).unwrap().st_ino;
    m.unmount();
    let (ino, what) = if root {
        (1, "ino 1 (the root's)")
    } else {
        (other_ino, "the ino of other.img")
    };
    let g = m.meta("a.img").unwrap();
    let old = meta_line(&g, "ino").unwrap().to_string();
    set_meta(
        &m,
        "a.img",
        g.replace(&format!("ino {old}\n"), &format!("ino {ino}\n"))
            .as_bytes(),
    );
    m.mount();
    let mut problems = Vec::new();
    // Look the other file up first, then the damaged one, then the other again.
    if let Err(e) = alive(&m, &other) {
        problems.push(format!("before reading a.img: {e}"));
    }
    match read(&m.p("a.img")) {
        Ok(v) if v == want => {}
        Err(Errno::EIO) => {}
        Ok(_) => problems.push(format!("a.img with {what}: reads wrong bytes")),
        Err(e) => problems.push(format!("a.img with {what}: {e}")),
    }
    if let Err(e) = alive(&m, &other) {
        problems.push(format!("after reading a.img with {what}: {e}"));
    }
    assert!(
        problems.is_empty(),
        "a damaged ino line in a delta's record broke the mount:\n  {}",
        problems.join("\n  ")
    );
    m.unmount();
}

#[test]
fn record_ino_of_root() {
    ino_collision(true);
}

#[test]
fn record_ino_of_another_file() {
    ino_collision(false);
}

/// A record longer than 4 KiB (a deep lower path and a long block list): it must read back
/// after a remount (it read as corrupt, EIO, while fsck called it clean: a fixed 4 KiB
/// buffer for fgetxattr). On tmpfs the xattr can hold it; on ext4 (one xattr fits in a
/// block) the delta cannot be recorded at all, and is made a whole file instead of
/// failing the write.
fn long_record(on_tmpfs: bool) {
    let mut m = DeltaMount::new("long-record", "delta_threshold=64K");
    if on_tmpfs {
        let root = m.dir.join("");
        sys::mount("tmpfs", &root, "tmpfs", 0, "size=64m").expect("mount a tmpfs");
        for d in [&m.lower, &m.lower2, &m.upper, &m.work, &m.mnt] {
            std::fs::create_dir_all(d).unwrap();
        }
    }
    // 16 components of 200 bytes: the record's data line alone is over 3 KiB.
    let deep: String = (0..16)
        .map(|i| format!("{}{i:02}/", "d".repeat(198)))
        .collect::<String>()
        + "f.img";
    let size = 16 << 20;
    let lower = write_lower(&m.lower.join(&deep), 5, size);
    let other = write_lower(&m.lower.join("other.img"), 6, 64 * KIB);
    m.mount();
    let mut want = lower.clone();
    let fd = sys::open(&m.p(&deep), libc::O_RDWR, 0).expect("open the deep file");
    // 100 scattered blocks: a block list of about 1 KiB, far below compaction.
    for i in 0..100u64 {
        let blk = i * 40 + 3;
        let data = pattern(700 + i, 0, 4096);
        sys::pwrite_all(&fd, &data, blk * 4096)
            .unwrap_or_else(|e| panic!("write block {blk}: {e}"));
        want[(blk * 4096) as usize..(blk * 4096 + 4096) as usize].copy_from_slice(&data);
    }
    drop(fd);
    let got = read(&m.p(&deep)).expect("read back before the remount");
    assert!(got == want, "the deep file reads wrong before the remount");
    m.unmount();
    let rec = m.meta(&deep).unwrap_or_default();
    if on_tmpfs {
        assert!(
            meta_line(&rec, "delta").is_some() && rec.len() > 4096,
            "expected a delta record over 4 KiB, got {} bytes: {:?}",
            rec.len(),
            rec.get(..200)
        );
    }
    eprintln!(
        "record: {} bytes, delta: {}",
        rec.len(),
        meta_line(&rec, "delta").is_some()
    );
    let (ok, out) = m.fsck(false);
    assert!(ok, "fsck is not clean:\n{out}");
    m.mount();
    match read(&m.p(&deep)) {
        Ok(v) => assert!(v == want, "the deep file reads wrong after the remount"),
        Err(e) => panic!("reading the deep file after the remount: {e}\n{}", m.log()),
    }
    assert_alive(&m, &other, "after reading the deep file");
    m.unmount();
}

#[test]
fn record_over_4k_reads_back() {
    long_record(true);
}

#[test]
fn record_too_long_for_ext4_made_whole() {
    long_record(false);
}
