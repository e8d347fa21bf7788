//! Directory link counts against kernel overlayfs: a directory merged from several
//! branches reports nlink 1 ("unknown"), never a count that makes nlink-based walkers
//! (find without -noleaf) skip subdirectories; a directory in one branch keeps its count.

use std::process::Command;
use strata_tests::{Fixture, Layer, Mounted, Pair};

/// st_nlink of a directory in the mount.
fn nlink(m: &Mounted, p: &str) -> u64 {
    strata_tests::sys::lstat(&m.p(p))
        .unwrap_or_else(|e| panic!("{}: lstat {p}: {e}", m.label()))
        .st_nlink
}

/// Directories `find` lists under `p` without -noleaf (it trusts nlink to stop early).
fn find_dirs(m: &Mounted, p: &str) -> Vec<String> {
    let out = Command::new("find")
        .arg(m.p(p))
        .args(["-mindepth", "1", "-type", "d"])
        .output()
        .expect("run find");
    assert!(out.status.success(), "find: {out:?}");
    let root = m.p(p);
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            l.strip_prefix(root.to_str().unwrap())
                .unwrap_or(l)
                .to_string()
        })
        .collect();
    v.sort();
    v
}

fn check(p: &Pair, what: &str, dirs: &[&str]) {
    for d in dirs {
        p.both(&format!("{what}: nlink of {d}"), |m| nlink(m, d));
    }
    p.both(&format!("{what}: find"), |m| find_dirs(m, "p"));
}

#[test]
fn merged_directory_nlink_never_hides_subdirectories() {
    let fx = Fixture::new()
        .lower(
            Layer::new()
                .dir("p/s1/deep")
                .dir("p/s2")
                .dir("only/a")
                .dir("only/b"),
        )
        .lower(Layer::new().dir("p/s0"));
    let mut p = fx.pair();
    check(&p, "fresh", &["p", "only", "p/s1"]);
    p.both("mkdir p/s3", |m| m.mkdir("p/s3", 0o755));
    p.both("mkdir p/s3/x", |m| m.mkdir("p/s3/x", 0o755));
    check(&p, "after mkdir", &["p", "p/s3", "only"]);
    let found = find_dirs(&p.s, "p");
    assert_eq!(
        found,
        ["/s0", "/s1", "/s1/deep", "/s2", "/s3", "/s3/x"],
        "find without -noleaf"
    );
    assert!(nlink(&p.s, "p") == 1 || nlink(&p.s, "p") >= 2 + 4);
    p.both("rmdir p/s2", |m| m.rmdir("p/s2"));
    p.both("rmdir p/s3/x", |m| m.rmdir("p/s3/x"));
    check(&p, "after rmdir", &["p", "p/s3"]);
    p.o.remount();
    p.s.remount();
    check(&p, "after remount", &["p", "p/s3", "only", "p/s1"]);
    assert_eq!(find_dirs(&p.s, "p"), ["/s0", "/s1", "/s1/deep", "/s3"]);
}
