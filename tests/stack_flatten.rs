//! Long delta chains are flattened (docs/format.md, "Chains stay fast"): a file whose
//! bytes would come from more than six files has its top delta made whole — in the
//! background by a mount that opens it, or at once by `strata compact --chains` on an
//! unmounted upper — and it reads the same before and after.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use strata_tests::delta::{chain_files, meta_of, META_XATTR};
use strata_tests::mount::{pid_alive, pids_with_arg};
use strata_tests::{
    is_mounted, run_strata, strata_bin, wait_until, Fixture, Layer, Mounted, TempDir,
};

/// The bound strata documents (fs/src/flatten.rs MAX_CHAIN_FILES).
const MAX_CHAIN_FILES: usize = 6;
const SIZE: usize = 2 << 20;
const BLOCK: u64 = 4096;

fn base() -> Vec<u8> {
    (0..SIZE)
        .map(|i| (i % 253) as u8 ^ (i >> 12) as u8)
        .collect()
}

fn layers_of(m: &Mounted) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = m.upper.iter().cloned().collect();
    v.extend(m.lowers.iter().cloned());
    v
}

/// A mount that writes into a file through a chain deeper than the bound flattens it in
/// the background, so rotating level after level never builds a chain past the bound.
#[test]
fn mount_flattens_a_deep_chain_in_the_background() {
    let mut want = base();
    let mut s = Fixture::new()
        .lower(Layer::new().file("img", want.clone()))
        .strata();
    let mut deepest = 0;
    for level in 1..=9u8 {
        let off = u64::from(level) * 7 * BLOCK;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(s.p("img"))
            .expect("open img");
        f.write_all_at(&[level; 4096], off).expect("write img");
        drop(f);
        want[off as usize..off as usize + 4096].fill(level);
        let layers = layers_of(&s);
        // The background worker finishes within a bounded time; the chain is then back
        // under the bound.
        let ok = wait_until(Duration::from_secs(30), || {
            chain_files(&layers, "img") <= MAX_CHAIN_FILES
        });
        let n = chain_files(&layers, "img");
        deepest = deepest.max(n);
        assert!(
            ok,
            "level {level}: img's bytes come from {n} files (bound {MAX_CHAIN_FILES}); record: {:?}\n{}",
            meta_of(&layers[0].join("img")),
            s.log()
        );
        assert!(
            std::fs::read(s.p("img")).expect("read img") == want,
            "level {level}: img reads wrong"
        );
        strata_tests::stack::rotate(&mut s, usize::from(level));
        assert!(
            std::fs::read(s.p("img")).expect("read img") == want,
            "level {level}: img reads wrong after the rotation"
        );
    }
    assert_eq!(
        deepest, MAX_CHAIN_FILES,
        "the chain should have grown to the bound before being flattened"
    );
}

/// Layers written by hand as strata writes them: `l0/img` plain, each `lK/img` a sparse
/// delta holding block 3K over the layer below (format 2 records).
fn hand_made_chain(dir: &TempDir, depth: usize) -> Vec<PathBuf> {
    let l0 = dir.join("l0");
    std::fs::create_dir_all(&l0).expect("mkdir l0");
    std::fs::write(l0.join("img"), base()).expect("write l0/img");
    let mut layers = vec![l0];
    for k in 1..=depth {
        let l = dir.join(&format!("l{k}"));
        std::fs::create_dir_all(&l).expect("mkdir layer");
        let below = layers[k - 1].join("img");
        let st = std::fs::symlink_metadata(&below).expect("stat below");
        let f = std::fs::File::create(l.join("img")).expect("create delta");
        f.set_len(SIZE as u64).expect("size delta");
        let blk = 3 * k as u64;
        f.write_all_at(&[k as u8; 4096], blk * BLOCK)
            .expect("write block");
        f.sync_all().expect("sync");
        let rec = format!(
            "format 2\nident {} {} {} {}\ndelta 1 4096 {SIZE}\nblocks {blk}-{}\ndata +1 img\nend\n",
            st.len(),
            st.mtime(),
            st.mtime_nsec(),
            st.ino(),
            blk + 1
        );
        strata_tests::sys::lsetxattr(&l.join("img"), META_XATTR, rec.as_bytes(), 0)
            .expect("set the record");
        layers.push(l);
    }
    layers.reverse();
    layers
}

fn expected(depth: usize) -> Vec<u8> {
    let mut want = base();
    for k in 1..=depth {
        let off = 3 * k * 4096;
        want[off..off + 4096].fill(k as u8);
    }
    want
}

/// Read `img` through a read-only strata mount of `layers` (top first).
fn read_through(dir: &TempDir, layers: &[PathBuf]) -> Vec<u8> {
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).expect("mkdir mnt");
    let l: Vec<String> = layers.iter().map(|p| p.display().to_string()).collect();
    let opts = format!("lowerdir={}", l.join(":"));
    let m = mnt.display().to_string();
    let (ok, text) = run_strata(&["-o", &opts, &m], &dir.join("strata.log"));
    assert!(ok, "mount -o {opts}: {text}");
    let pids = pids_with_arg(&m);
    let got = std::fs::read(mnt.join("img"));
    let st = Command::new("umount").arg(&mnt).status().expect("umount");
    assert!(st.success() && !is_mounted(&mnt), "umount {m}");
    assert!(wait_until(Duration::from_secs(10), || pids
        .iter()
        .all(|p| !pid_alive(*p))));
    got.expect("read img through the stack")
}

fn compact_chains(upper: &Path, work: &Path, lowers: &[PathBuf]) -> (bool, String) {
    let l: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let out = Command::new(strata_bin())
        .arg("compact")
        .arg("--chains")
        .arg("--lowerdir")
        .arg(l.join(":"))
        .arg("--workdir")
        .arg(work)
        .arg(upper)
        .output()
        .expect("run strata compact --chains");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `strata compact --chains` makes an unmounted upper's too-deep delta whole; a chain at
/// the bound is left alone; the merged bytes never change.
#[test]
fn compact_chains_flattens_an_unmounted_upper() {
    let dir = TempDir::new("flatten");
    // Six deltas over a plain file: the top one's bytes come from seven files.
    let depth = MAX_CHAIN_FILES;
    let layers = hand_made_chain(&dir, depth);
    let want = expected(depth);
    assert!(
        read_through(&dir, &layers) == want,
        "the hand-made chain reads wrong"
    );
    let work = dir.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");

    // The layer right under the top sits at the bound: nothing to do there.
    let (ok, text) = compact_chains(&layers[1], &work, &layers[2..]);
    assert!(ok && text.contains("1 delta(s), 0 flattened"), "{text}");
    assert!(meta_of(&layers[1].join("img")).is_some_and(|m| m.contains("\ndelta ")));

    let (ok, text) = compact_chains(&layers[0], &work, &layers[1..]);
    assert!(ok && text.contains("1 delta(s), 1 flattened"), "{text}");
    let rec = meta_of(&layers[0].join("img")).unwrap_or_default();
    assert!(!rec.contains("delta "), "still a delta: {rec}");
    assert!(std::fs::read(layers[0].join("img")).expect("read") == want);
    assert_eq!(chain_files(&layers, "img"), 1);
    assert!(
        read_through(&dir, &layers) == want,
        "flattening changed the bytes"
    );
}
