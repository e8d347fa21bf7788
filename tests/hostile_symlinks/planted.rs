//! Symlinks planted or swapped in while mounted, and after a lookup.

use super::*;

/// Reads through a held directory handle must never show the canary.
#[track_caller]
pub(crate) fn assert_handle_clean(d: &Dir, what: &str) {
    if let Ok(names) = d.names() {
        assert!(
            !names.iter().any(|n| n == "canary-only"),
            "{what}: listing shows the canary's entries: {names:?}"
        );
    }
    for name in ["secret", "f", "g", "g2", "canary-only"] {
        if let Ok(data) = d.read(name) {
            assert!(
                !String::from_utf8_lossy(&data).contains(SECRET),
                "{what}: {name} shows the canary's content"
            );
        }
    }
}

/// The upper gains a symlink (pointing out) where strata will need a directory for a
/// copy-up, after strata looked the path up. The operations go through a directory
/// handle opened before, so the kernel asks the daemon about (that inode, name) and
/// never resolves the planted symlink itself: whatever strata does, it must not
/// follow it.
#[test]
fn upper_symlink_planted_while_mounted() {
    let c = Canary::new();
    let lower = Layer::new()
        .file("d/f", "lower d/f\n")
        .file("d/g", "lower d/g\n")
        .file("d/sub/h", "lower h\n")
        .file("secret", "not the canary\n");
    let fx = Fixture::new().lower(lower);
    let m = fx.strata();
    let d = Dir::open(&m.p("d")).unwrap();
    let sub = d.subdir("sub").unwrap();
    assert_eq!(d.names().unwrap(), vec!["f", "g", "sub"]);
    let upper = m.upper.clone().unwrap();
    sys::symlink(&c.abs(""), &upper.join("d")).unwrap();
    // Every operation that needs d (and d/sub) in the upper.
    let _ = d.write("f", 0, b"F");
    let _ = d.put("secret", b"mine");
    let _ = d.chmod("g", 0o600);
    let _ = d.chown("g", 1, 1);
    let _ = d.setxattr("g", "user.a", b"1");
    let _ = d.mkdir("etc", 0o755);
    if let Ok(etc) = d.subdir("etc") {
        let _ = etc.put("passwd", b"mine");
    }
    let _ = d.link("f", "f2");
    let _ = d.rename("g", "g2");
    let _ = d.unlink("f");
    let _ = sub.write("h", 0, b"H");
    let _ = sub.put("new", b"new");
    let _ = d.rename("sub", "sub2");
    let _ = d.symlink("x", "newlink");
    let _ = d.mkfifo("fifo");
    let _ = d.truncate("g2", 0);
    let _ = d.rmdir("etc");
    assert_handle_clean(&d, "held handle on d");
    assert_handle_clean(&sub, "held handle on d/sub");
    c.assert_untouched("upper symlink planted under a mounted strata");
    drop((d, sub));
    drop(m);
    c.assert_untouched("after unmount");
}

/// A lower directory replaced by a symlink out while mounted (lower branches are
/// not supposed to change, but the daemon must still not follow). Operations go
/// through handles opened before the swap.
#[test]
fn lower_dir_swapped_for_symlink_while_mounted() {
    let c = Canary::new();
    let lower = Layer::new()
        .file("e/f", "lower e/f\n")
        .file("e/sub/g", "lower g\n")
        .file("k/l", "lower k/l\n");
    let fx = Fixture::new().lower(lower);
    let m = fx.strata();
    let e = Dir::open(&m.p("e")).unwrap();
    let esub = e.subdir("sub").unwrap();
    let k = Dir::open(&m.p("k")).unwrap();
    assert_eq!(e.names().unwrap(), vec!["f", "sub"]);
    let l0 = m.lowers[0].clone();
    std::fs::rename(l0.join("e"), l0.join("e.moved")).unwrap();
    sys::symlink(&c.abs(""), &l0.join("e")).unwrap();
    std::fs::rename(l0.join("k"), l0.join("k.moved")).unwrap();
    sys::symlink(&c.rel_from_branch(0, ""), &l0.join("k")).unwrap();
    assert_handle_clean(&e, "e before writes");
    assert_handle_clean(&k, "k before writes");
    let _ = e.write("f", 0, b"F");
    let _ = e.write("secret", 0, b"S");
    let _ = e.put("new", b"mine");
    let _ = esub.chmod("g", 0o600);
    let _ = esub.write("g", 0, b"G");
    let _ = k.chown("l", 1, 1);
    let _ = k.write("secret", 0, b"S");
    let _ = k.put("mine", b"mine");
    let _ = e.rename("sub", "sub2");
    let _ = e.unlink("f");
    let _ = e.mkdir("etc", 0o755);
    let _ = k.link("l", "l2");
    let _ = k.truncate("f", 0);
    assert_handle_clean(&e, "e after writes");
    assert_handle_clean(&esub, "e/sub after writes");
    c.assert_untouched("lower dir swapped for a symlink");
    drop((e, esub, k));
    drop(m);
    c.assert_untouched("after unmount");
}

/// The work dir swapped for a symlink out while mounted: copy-ups through the work
/// dir must not land outside.
#[test]
fn workdir_swapped_for_symlink_while_mounted() {
    let c = Canary::new();
    let lower = Layer::new().file("a", "lower a\n").file("d/b", "lower b\n");
    let fx = Fixture::new().lower(lower);
    let m = fx.strata();
    assert!(m.stat("a").is_ok());
    let work = m.work.clone().unwrap();
    let moved = work.with_file_name("work.moved");
    std::fs::rename(&work, &moved).unwrap();
    sys::symlink(&c.abs(""), &work).unwrap();
    let _ = m.write_at("a", 0, "A");
    let _ = m.chmod("d/b", 0o600);
    let _ = m.put("d/new", "new");
    let _ = m.unlink("d/b");
    let _ = m.rename("d", "d2");
    c.assert_untouched("work dir swapped for a symlink");
    drop(m);
    c.assert_untouched("after unmount");
}

/// Name-based escapes: `..` and `/` never reach the daemon as names, and names that
/// look like paths are refused.
#[test]
fn dotdot_names_stay_inside() {
    let c = Canary::new();
    let fx = Fixture::new().lower(Layer::new().file("d/f", "f\n"));
    let m = fx.strata();
    assert_eq!(m.stat("d/..").map(|s| s.kind), Ok(FileKind::Dir));
    assert_eq!(m.read("d/../d/f"), Ok(b"f\n".to_vec()));
    // `..` of the mount root is the host directory holding the mount point.
    assert_eq!(
        m.ino("..").ok(),
        sys::lstat(&m.dir.path).map(|s| s.st_ino).ok()
    );
    assert_eq!(m.mkdir("d/..", 0o755), Err(Errno::EEXIST));
    assert_eq!(m.rmdir("d/.."), Err(Errno::ENOTEMPTY));
    c.assert_untouched("dot-dot names");
}

/// The upper gains a symlink out where a lower directory `aN` is, after strata (and the
/// kernel) looked `aN` up; every operation then goes by path, as `touch MNT/a/new` does.
/// strata must not follow the planted link and must not answer in a way (ESTALE) that
/// makes the kernel walk the path again and follow the link itself: the canary stays
/// unchanged whatever the operations return.
#[test]
fn upper_symlink_planted_after_lookup_by_path() {
    let c = Canary::new();
    type Op = fn(&Mounted, &str) -> Result<(), Errno>;
    let ops: &[(&str, Op)] = &[
        ("create", |m, d| m.put(&format!("{d}/secret"), "mine")),
        ("mkdir", |m, d| m.mkdir(&format!("{d}/etc"), 0o755)),
        ("mkfifo", |m, d| m.mkfifo(&format!("{d}/fifo"), 0o644)),
        ("mknod", |m, d| {
            m.mknod_char(&format!("{d}/null"), 0o644, 1, 3)
        }),
        ("symlink", |m, d| m.symlink("x", &format!("{d}/sl"))),
        ("link into", |m, d| m.link("top", &format!("{d}/lnk"))),
        ("rename into", |m, d| {
            m.rename(&format!("mv-{d}"), &format!("{d}/f"))
        }),
        ("chmod file inside", |m, d| {
            m.chmod(&format!("{d}/f"), 0o600)
        }),
        ("chown file inside", |m, d| m.chown(&format!("{d}/f"), 1, 1)),
        ("utimes file inside", |m, d| {
            m.set_times(&format!("{d}/f"), (5, 0), (5, 0))
        }),
        ("truncate file inside", |m, d| {
            m.truncate(&format!("{d}/f"), 0)
        }),
        ("setxattr file inside", |m, d| {
            m.setxattr(&format!("{d}/f"), "user.a", b"1")
        }),
        ("copy-up file inside", |m, d| {
            m.write_at(&format!("{d}/f"), 0, "F").map(drop)
        }),
        ("chmod the dir", |m, d| m.chmod(d, 0o700)),
        ("chown the dir", |m, d| m.chown(d, 1, 1)),
        ("setxattr the dir", |m, d| m.setxattr(d, "user.a", b"1")),
        ("utimes the dir", |m, d| m.set_times(d, (5, 0), (5, 0))),
    ];
    let mut lower = Layer::new().file("top", "top\n");
    for i in 0..ops.len() {
        lower = lower
            .file(&format!("a{i}/f"), "lower f\n")
            .file(&format!("mv-a{i}"), "moved\n");
    }
    let fx = Fixture::new().lower(lower);
    let m = fx.strata();
    let upper = m.upper.clone().unwrap();
    for (i, (what, op)) in ops.iter().enumerate() {
        let d = format!("a{i}");
        assert_eq!(m.stat(&d).map(|s| s.kind), Ok(FileKind::Dir), "{what}");
        assert!(m.read(&format!("{d}/f")).is_ok(), "{what}");
        sys::symlink(&c.abs(""), &upper.join(&d)).unwrap();
        let r = op(&m, &d);
        c.assert_untouched(&format!(
            "{what} in {d} after a symlink was planted there ({r:?})"
        ));
    }
    assert_no_secret(&m);
    drop(m);
    c.assert_untouched("after unmount");
}
