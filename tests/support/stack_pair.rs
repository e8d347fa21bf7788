//! Helpers of the stack rotation tests: rotate a strata mount and a kernel overlayfs mount
//! of identical branches the same way and compare them (tests/stack_rotation.rs,
//! tests/stack_links.rs).

use crate::mount::{Mounted, Pair};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, MetadataExt};

/// Unmount, push the upper down as the top lower, mount again with a fresh upper.
pub fn rotate_one(m: &mut Mounted) {
    m.unmount();
    push_down(m);
}

/// Push the (unmounted) upper down as the top lower and mount with a fresh upper.
pub fn push_down(m: &mut Mounted) {
    let upper = m.upper.take().expect("a writable mount");
    m.lowers.insert(0, upper);
    let n = m.lowers.len();
    let (u, w) = (m.dir.join(&format!("u{n}")), m.dir.join(&format!("w{n}")));
    std::fs::create_dir_all(&u).expect("mkdir upper");
    std::fs::create_dir_all(&w).expect("mkdir work");
    m.upper = Some(u);
    m.work = Some(w);
    // Recomputed from the branches (and, for overlayfs, the richest option set).
    m.options = String::new();
    m.mount();
}

/// st_ino of every path of strata's merged tree.
pub fn inos(m: &Mounted) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for p in m.tree().entries.keys() {
        if let Ok(md) = std::fs::symlink_metadata(m.p(p)) {
            out.insert(p.clone(), md.ino());
        }
    }
    out
}

/// Rotate both; the trees must agree, and strata's inode numbers must be the same as
/// before the rotation.
#[track_caller]
pub fn rotate(p: &mut Pair, what: &str) {
    p.same_tree(&format!("{what}: before the rotation"));
    let before = inos(&p.s);
    rotate_one(&mut p.o);
    rotate_one(&mut p.s);
    p.same_tree(&format!("{what}: after the rotation"));
    let after = inos(&p.s);
    for (path, ino) in &before {
        if let Some(now) = after.get(path) {
            assert_eq!(
                ino,
                now,
                "{what}: st_ino of /{path} changed across the rotation\n{}",
                p.s.log()
            );
        }
    }
}

pub fn write_at(m: &Mounted, rel: &str, off: u64, data: &[u8]) {
    let f = OpenOptions::new()
        .write(true)
        .open(m.p(rel))
        .unwrap_or_else(|e| panic!("{}: open /{rel}: {e}", m.label()));
    f.write_all_at(data, off)
        .unwrap_or_else(|e| panic!("{}: write /{rel}: {e}", m.label()));
}

pub fn read(m: &Mounted, rel: &str) -> Vec<u8> {
    std::fs::read(m.p(rel)).unwrap_or_else(|e| panic!("{}: read /{rel}: {e}", m.label()))
}

/// A big lower file (over the default 1 MiB delta threshold), every byte distinct enough.
pub fn big(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// Mode, size, content, st_ino and st_nlink of each name.
pub fn names_state(m: &Mounted, names: &[&str]) -> Vec<(u32, u64, Vec<u8>, u64, u64)> {
    names
        .iter()
        .map(|n| {
            let md = std::fs::metadata(m.p(n)).unwrap();
            (
                md.mode() & 0o7777,
                md.len(),
                read(m, n),
                md.ino(),
                md.nlink(),
            )
        })
        .collect()
}

/// Link count of `rel` (not following a symlink).
pub fn nlink(m: &Mounted, rel: &str) -> u64 {
    std::fs::symlink_metadata(m.p(rel))
        .unwrap_or_else(|e| panic!("{}: lstat /{rel}: {e}", m.label()))
        .nlink()
}
