//! Inode numbers, errnos, read-only and many-branch mounts, listings after remount.

use super::*;

#[test]
fn inode_numbers_stable() {
    let mut p = pair();
    let paths = [
        "f1", "f2", "d", "d/a", "m", "m/low", "m/top", "hl1", "sym", "fifo", "exec",
    ];
    let before: Vec<Vec<_>> = [&p.o, &p.s]
        .iter()
        .map(|m| paths.iter().map(|f| m.ino(f).unwrap()).collect())
        .collect();
    p.both("metadata copy-up", |m| m.chmod("f1", 0o640));
    p.both("data copy-up", |m| m.write_at("d/a", 0, "A"));
    p.both("xattr copy-up", |m| m.setxattr("f2", "user.x", b"1"));
    p.both("utimes copy-up", |m| m.set_times("exec", (5, 0), (5, 0)));
    p.both("dir copy-up", |m| m.put("m/new", "n"));
    p.both("symlink copy-up", |m| m.chown("sym", 7, 7));
    let mid: Vec<Vec<_>> = [&p.o, &p.s]
        .iter()
        .map(|m| paths.iter().map(|f| m.ino(f).unwrap()).collect())
        .collect();
    assert_eq!(
        before[0], mid[0],
        "overlayfs: st_ino changed across copy-up"
    );
    assert_eq!(before[1], mid[1], "strata: st_ino changed across copy-up");
    p.remount();
    let after: Vec<Vec<_>> = [&p.o, &p.s]
        .iter()
        .map(|m| paths.iter().map(|f| m.ino(f).unwrap()).collect())
        .collect();
    assert_eq!(
        before[0], after[0],
        "overlayfs: st_ino changed across remount"
    );
    assert_eq!(before[1], after[1], "strata: st_ino changed across remount");
    // New files keep theirs across remount too.
    let new_before = (p.o.ino("m/new").unwrap(), p.s.ino("m/new").unwrap());
    p.remount();
    assert_eq!(
        new_before.0,
        p.o.ino("m/new").unwrap(),
        "overlayfs: new file ino"
    );
    assert_eq!(
        new_before.1,
        p.s.ino("m/new").unwrap(),
        "strata: new file ino"
    );
    // Distinct files have distinct inode numbers.
    for (m, inos) in [(&p.o, &after[0]), (&p.s, &after[1])] {
        let mut v: Vec<_> = inos.clone();
        v.sort();
        v.dedup();
        assert_eq!(
            v.len(),
            inos.len(),
            "{}: two paths share an st_ino: {inos:?}",
            m.label()
        );
    }
    // st_dev uniform: every entry of the tree (checked by readdir inside tree()).
    p.same_tree("after remounts");
}

#[test]
fn errno_parity() {
    let p = pair();
    let long = long_name();
    let max = max_name();
    p.both("stat missing", |m| m.stat("missing"));
    p.both("stat under file", |m| m.stat("f1/x"));
    p.both("create under file", |m| m.put("f1/x", "x"));
    p.both("mkdir existing", |m| m.mkdir("d", 0o755));
    p.both("mkdir over file", |m| m.mkdir("f1", 0o755));
    p.both("O_EXCL existing lower", |m| m.create("f1", 0o644));
    p.both("O_EXCL existing dir", |m| m.create("d", 0o644));
    p.both("rmdir non-empty lower", |m| m.rmdir("d"));
    p.both("rmdir file", |m| m.rmdir("f1"));
    p.both("rmdir missing", |m| m.rmdir("missing"));
    p.both("unlink dir", |m| m.unlink("d"));
    p.both("unlink missing", |m| m.unlink("missing"));
    p.both("open dir for writing", |m| m.write_at("d", 0, "x"));
    p.both("readlink of file", |m| m.readlink("f1"));
    p.both("readdir of file", |m| m.readdir("f1"));
    p.both("rename dir onto file", |m| m.rename("d", "f1"));
    p.both("rename file onto dir", |m| m.rename("f1", "d"));
    p.both("rename dir onto non-empty dir", |m| m.rename("m", "d"));
    p.both("rename dir into itself", |m| m.rename("d", "d/sub/inside"));
    p.both("rename missing", |m| m.rename("missing", "x"));
    p.both("rename to missing parent", |m| m.rename("f1", "nodir/x"));
    p.both("truncate dir", |m| m.truncate("d", 0));
    p.both("link to existing name", |m| m.link("f1", "f2"));
    p.both("symlink existing", |m| m.symlink("x", "f1"));
    p.both("mkfifo existing", |m| m.mkfifo("d", 0o644));
    p.both("256-byte name: stat", |m| m.stat(&long));
    p.both("256-byte name: create", |m| m.create(&long, 0o644));
    p.both("256-byte name: mkdir", |m| m.mkdir(&long, 0o755));
    p.both("256-byte name: symlink", |m| m.symlink("x", &long));
    p.both("256-byte name: rename to", |m| m.rename("f1", &long));
    p.both("256-byte name: link to", |m| m.link("f1", &long));
    p.both("255-byte name: create", |m| m.create(&max, 0o644));
    p.both("255-byte name: stat", |m| m.stat(&max));
    p.both("255-byte name: rename lower file to it", |m| {
        m.rename("f2", &format!("d/{max}"))
    });
    p.both("255-byte name: mkdir", |m| {
        m.mkdir(&format!("m/{max}"), 0o755)
    });
    p.both("listing", |m| {
        (m.readdir(""), m.readdir("d"), m.readdir("m"))
    });
    p.both("xattr on missing", |m| m.getxattr("missing", "user.x"));
    p.both("removexattr missing name", |m| {
        m.removexattr("f1", "user.x")
    });
    p.both("access missing", |m| m.access("missing", libc::R_OK));
    p.both("access lower W_OK", |m| m.access("f1", libc::W_OK));
    p.both("access lower X_OK", |m| {
        (m.access("exec", libc::X_OK), m.access("f1", libc::X_OK))
    });
}

#[test]
fn readonly_mount() {
    let p = base().pair_ro();
    p.same_tree("read-only merged view");
    p.both("create", |m| m.create("new", 0o644));
    p.both("write lower", |m| m.write_at("f1", 0, "x"));
    p.both("truncate", |m| m.truncate("f1", 0));
    p.both("chmod", |m| m.chmod("f1", 0o600));
    p.both("chown", |m| m.chown("f1", 1, 1));
    p.both("utimes", |m| m.set_times("f1", (1, 0), (1, 0)));
    p.both("setxattr", |m| m.setxattr("f1", "user.a", b"1"));
    p.both("removexattr", |m| m.removexattr("xf", "user.k"));
    p.both("unlink", |m| m.unlink("f1"));
    p.both("mkdir", |m| m.mkdir("nd", 0o755));
    p.both("rmdir", |m| m.rmdir("ghost"));
    p.both("rename", |m| m.rename("f1", "f9"));
    p.both("link", |m| m.link("f1", "f9"));
    p.both("symlink", |m| m.symlink("f1", "f9"));
    p.both("mkfifo", |m| m.mkfifo("f9", 0o644));
    p.both("reads work", |m| {
        (
            m.read("f1"),
            m.readdir("m"),
            m.readlink("sym"),
            m.xattrs("xf"),
        )
    });
    p.both("access W_OK", |m| m.access("f1", libc::W_OK));
    p.same_tree("unchanged");
}

#[test]
fn three_lower_branches() {
    let l0 = Layer::new()
        .file("a/top", "0\n")
        .file("b", "b0\n")
        .whiteout("c", Wh::File);
    let l1 = Layer::new()
        .file("a/mid", "1\n")
        .whiteout("a/bottom", Wh::CharDev)
        .file("c", "c1\n")
        .opaque("o", Opq::WhFile)
        .file("o/mid", "1\n");
    let l2 = Layer::new()
        .file("a/bottom", "2\n")
        .file("a/bottom2", "2\n")
        .file("b", "b2\n")
        .file("o/bottom", "2\n")
        .file("only2", "2\n");
    let fx = Fixture::new().lower(l0).lower(l1).lower(l2);
    let mut p = fx.pair();
    p.same_tree("three lowers");
    p.both("listing", |m| {
        (m.readdir(""), m.readdir("a"), m.readdir("o"))
    });
    p.both("ops", |m| {
        (
            m.rename("a", "a2"),
            m.readdir("a2"),
            m.unlink("a2/bottom2"),
            m.put("c", "new c"),
            m.rename("o", "a2/o"),
        )
    });
    p.remount();
    p.same_tree("three lowers after ops and remount");
    let ro = fx.pair_ro();
    ro.same_tree("three lowers read-only");
}

#[test]
fn internals_never_visible() {
    let p = pair();
    // Operations that make a union write whiteouts, opaque markers, redirects and
    // origin metadata in the upper.
    p.both("ops", |m| {
        (
            m.unlink("d/a"),
            m.rename("d", "dd"),
            m.unlink("m/low"),
            m.rmdir("ghost"),
            m.mkdir("ghost", 0o755),
            m.chmod("f1", 0o600),
            m.write_at("hl1", 0, "x"),
            m.rename("m", "dd/m"),
        )
    });
    // tree() lists xattrs of every entry (asserting no internal ones on strata) and
    // readdir asserts no `.wh.*` name shows.
    p.same_tree("after ops");
    for path in ["", "dd", "dd/m", "ghost", "f1", "hl1", "hl2"] {
        p.both(&format!("xattrs {path}"), |m| m.xattrs(path));
        for name in [
            "trusted.overlay.opaque",
            "trusted.overlay.redirect",
            "trusted.overlay.origin",
        ] {
            assert!(
                p.s.getxattr(path, name).is_err(),
                "strata: {name} readable on /{path}"
            );
        }
    }
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
}

#[test]
fn dir_types_and_listings_after_remount() {
    let mut p = pair();
    p.both("build", |m| {
        (
            m.mkdir("new", 0o750),
            m.mkdir("new/deep", 0o755),
            m.put("new/deep/f", "deep"),
            m.symlink("deep/f", "new/l"),
            m.mkfifo("new/p", 0o600),
            m.link("new/deep/f", "new/hl"),
            m.setxattr("new/deep", "user.z", b"zz"),
            m.rename("d/sub", "new/sub"),
            m.unlink("hide/keep"),
            m.put("m/top", "changed"),
        )
    });
    p.same_tree("before remount");
    p.remount();
    p.same_tree("after remount");
    p.remount();
    p.same_tree("after second remount");
    p.both("kinds", |m| m.readdir("new"));
    assert_eq!(
        p.s.readdir("new").unwrap(),
        vec![
            ("deep".to_string(), FileKind::Dir),
            ("hl".to_string(), FileKind::File),
            ("l".to_string(), FileKind::Symlink),
            ("p".to_string(), FileKind::Fifo),
            ("sub".to_string(), FileKind::Dir),
        ]
    );
}

#[test]
fn large_merged_directory() {
    // More entries than one readdir buffer holds, merged from two layers with
    // whiteouts, so offsets / continuation of readdir are exercised.
    let mut top = Layer::new();
    let mut bottom = Layer::new();
    for k in 0..1200 {
        bottom = bottom.file(
            &format!("big/file-{k:05}-with-a-longish-name"),
            format!("{k}"),
        );
    }
    for k in (0..1200).step_by(3) {
        top = top.file(&format!("big/file-{k:05}-with-a-longish-name"), "top");
    }
    for k in (1..1200).step_by(7).filter(|k| k % 3 != 0) {
        top = top.whiteout(&format!("big/file-{k:05}-with-a-longish-name"), Wh::File);
    }
    for k in 0..400 {
        top = top.file(&format!("big/top-only-{k:04}"), "t");
    }
    let mut p = Fixture::new().lower(top).lower(bottom).pair();
    let n = p.both_val("listing", |m| m.readdir("big").map(|v| v.len()));
    assert!(n.unwrap() > 1400);
    p.both("delete some, add some", |m| {
        let mut r = Vec::new();
        for k in (0..1200).step_by(5) {
            r.push(m.unlink(&format!("big/file-{k:05}-with-a-longish-name")));
        }
        for k in 0..100 {
            r.push(m.put(&format!("big/new-{k}"), "n"));
        }
        r
    });
    p.both("listing after changes", |m| m.readdir("big"));
    p.remount();
    p.both("listing after remount", |m| m.readdir("big"));
}
