//! Hand-written differential cases: each operation / semantic of BRIEF §2 runs on a
//! strata mount and on a kernel overlayfs mount of identical branches, and the
//! outcomes (errno, content, listing, metadata, inode stability) must be equal.

use strata_tests::{long_name, max_name, Errno, FileKind, Fixture, Layer, Opq, Pair, Wh};

/// Two lower layers exercising every lower format.
fn base() -> Fixture {
    let top = Layer::new()
        .file("f2", "top f2\n")
        .file("shadow", "from top\n")
        .file("m/top", "top\n")
        // whiteouts, every lower format
        .whiteout("hide/wf", Wh::File)
        .whiteout("hide/wc", Wh::CharDev)
        .whiteout("hide/wdir", Wh::File)
        .whiteout("ghost/a", Wh::File)
        .whiteout("ghost/b", Wh::CharDev)
        .whiteout("nothing-below", Wh::File)
        .whiteout("nothing-below-c", Wh::CharDev)
        // opaque directories, every lower format
        .opaque("opq_wh", Opq::WhFile)
        .file("opq_wh/above", "above\n")
        .opaque("opq_tr", Opq::Trusted)
        .file("opq_tr/above", "above\n")
        .opaque("opq_us", Opq::User)
        .file("opq_us/above", "above\n");
    let bottom = Layer::new()
        .file("f1", "lower f1\n")
        .file_mode("exec", "#!/bin/sh\n", 0o755)
        .file("shadow", "from bottom\n")
        .file("d/a", "a\n")
        .file("d/b", "b\n")
        .file("d/sub/x", "x\n")
        .file("m/low", "low\n")
        .file("hide/wf", "hidden\n")
        .file("hide/wc", "hidden\n")
        .file("hide/wdir/inner", "hidden\n")
        .file("hide/keep", "keep\n")
        .file("ghost/a", "a\n")
        .file("ghost/b", "b\n")
        .file("opq_wh/below", "below\n")
        .file("opq_tr/below", "below\n")
        .file("opq_us/below", "below\n")
        .file("hl1", "hard\n")
        .hardlink("hl2", "hl1")
        .symlink("sym", "f1")
        .symlink("dsym", "d")
        .fifo("fifo")
        .file("xf", "x\n")
        .xattr("xf", "user.k", "v")
        .xattr("d", "user.dk", "dv")
        .file("own", "own\n")
        .owner("own", 1000, 1000)
        .file("dated", "old\n")
        .mtime("dated", 1_000_000_000)
        .sparse("sparse", 4 << 20, &[(0, b"head"), (2 << 20, b"middle")])
        .file("big", vec![b'z'; 300_000]);
    Fixture::new().lower(top).lower(bottom)
}

fn pair() -> Pair {
    base().pair()
}

/// Run `f` on each mount and compare whether an inode number stayed the same.
fn ino_kept(
    p: &Pair,
    what: &str,
    path_before: &str,
    path_after: &str,
    f: impl Fn(&strata_tests::Mounted),
) {
    p.both(what, |m| {
        let before = m.ino(path_before);
        f(m);
        let after = m.ino(path_after);
        (before.is_ok(), before == after)
    });
}

#[test]
fn initial_tree_matches() {
    let p = pair();
    p.same_tree("initial merged view");
    for d in [
        "", "m", "hide", "ghost", "opq_wh", "opq_tr", "opq_us", "d", "d/sub",
    ] {
        p.both(&format!("readdir /{d}"), |m| m.readdir(d));
    }
    // And what overlayfs shows is what the brief says.
    assert_eq!(p.s.names("hide"), Ok(vec!["keep".to_string()]));
    assert_eq!(p.s.names("ghost"), Ok(vec![]));
    for d in ["opq_wh", "opq_tr", "opq_us"] {
        assert_eq!(p.s.names(d), Ok(vec!["above".to_string()]), "{d}");
    }
    assert_eq!(
        p.s.names("m"),
        Ok(vec!["low".to_string(), "top".to_string()])
    );
    assert_eq!(p.s.read_str("shadow"), Ok("from top\n".into()));
}

#[test]
fn whiteouts_hide_lower_entries() {
    let p = pair();
    for path in [
        "hide/wf",
        "hide/wc",
        "hide/wdir",
        "hide/wdir/inner",
        "ghost/a",
        "ghost/b",
        "nothing-below",
        "nothing-below-c",
        "hide/.wh.wf",
        "opq_wh/.wh..wh..opq",
        "opq_wh/below",
        "opq_tr/below",
        "opq_us/below",
    ] {
        p.both(&format!("stat {path}"), |m| m.stat(path));
        p.both(&format!("read {path}"), |m| m.read(path));
    }
    p.both("xattrs of opaque dirs", |m| {
        (m.xattrs("opq_wh"), m.xattrs("opq_tr"), m.xattrs("opq_us"))
    });
}

#[test]
fn create_over_whiteout() {
    let p = pair();
    p.both("create hide/wf", |m| m.put("hide/wf", "new\n"));
    p.both("read hide/wf", |m| m.read("hide/wf"));
    p.both("mknod over char whiteout", |m| m.mkfifo("hide/wc", 0o600));
    p.both("stat hide/wc", |m| m.stat("hide/wc"));
    p.both("mkdir over whited-out dir", |m| m.mkdir("hide/wdir", 0o755));
    p.both("whited-out dir recreated is empty", |m| {
        m.readdir("hide/wdir")
    });
    p.both("symlink over whiteout", |m| m.symlink("keep", "ghost/a"));
    p.both("readlink", |m| m.readlink("ghost/a"));
    p.both("listing", |m| (m.readdir("hide"), m.readdir("ghost")));
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
}

#[test]
fn copy_up_on_write() {
    let p = pair();
    ino_kept(&p, "ino across data copy-up", "f1", "f1", |m| {
        m.write_at("f1", 2, "XY").unwrap();
    });
    p.both("read after write", |m| m.read("f1"));
    p.both("stat after write", |m| m.stat("f1"));
    p.both("lower branch untouched", |m| {
        std::fs::read(m.lowers[1].join("f1")).map_err(|e| e.to_string())
    });
    p.both("append", |m| m.append("exec", "echo hi\n"));
    p.both("read appended", |m| (m.read("exec"), m.stat("exec")));
    p.both("truncate down", |m| m.truncate("big", 1000));
    p.both("truncate up", |m| m.truncate("shadow", 100_000));
    p.both("read truncated", |m| {
        (m.read("big"), m.read("shadow"), m.stat("big"))
    });
    p.both("O_TRUNC rewrite", |m| m.put("d/a", "rewritten\n"));
    p.both("read rewritten", |m| m.read("d/a"));
    p.both("write into big lower file", |m| {
        m.write_at("big", 500, vec![b'q'; 10])
    });
    p.both("pread", |m| m.pread("big", 20, 495));
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
}

#[test]
fn metadata_changes_on_lower_files() {
    let p = pair();
    ino_kept(&p, "ino across chmod copy-up", "f1", "f1", |m| {
        m.chmod("f1", 0o600).unwrap();
    });
    p.both("chown", |m| m.chown("f2", 1000, 2000));
    p.both("chown dir", |m| m.chown("d", 1001, 1001));
    p.both("chmod dir", |m| m.chmod("d/sub", 0o700));
    p.both("lchown symlink", |m| m.chown("sym", 1002, 1002));
    p.both("chmod own (setuid stays off)", |m| m.chmod("own", 0o4755));
    p.both("utimes", |m| {
        m.set_times("exec", (1_500_000_000, 0), (1_600_000_000, 123))
    });
    p.both("utimes dir", |m| m.set_times("m", (1, 0), (2, 0)));
    p.both("utimes symlink", |m| m.set_times("sym", (3, 0), (4, 0)));
    p.both("metadata", |m| {
        ["f1", "f2", "d", "d/sub", "sym", "own", "exec", "m"]
            .map(|f| m.stat(f))
            .to_vec()
    });
    p.both("explicit mtimes", |m| {
        (
            m.mtime("exec"),
            m.mtime("m"),
            m.mtime("sym"),
            m.mtime("dated"),
        )
    });
    p.both("content unchanged", |m| {
        (m.read("f1"), m.read("f2"), m.read("exec"))
    });
    p.both("listing of chowned dir still merged", |m| m.readdir("d"));
    p.both("lchmod on symlink", |m| m.lchmod("sym", 0o600));
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
    p.both("mtimes after remount", |m| (m.mtime("exec"), m.mtime("m")));
}

#[test]
fn xattrs_on_lower_files_and_dirs() {
    let p = pair();
    p.both("list lower", |m| {
        (m.xattrs("xf"), m.xattrs("d"), m.xattrs("f1"))
    });
    p.both("get lower", |m| m.getxattr("xf", "user.k"));
    p.both("get missing", |m| m.getxattr("xf", "user.nope"));
    p.both("set on lower file", |m| m.setxattr("f1", "user.new", b"1"));
    p.both("set on lower dir", |m| {
        m.setxattr("d/sub", "user.new", b"2")
    });
    p.both("set on merged dir", |m| m.setxattr("m", "user.new", b"3"));
    p.both("XATTR_CREATE existing", |m| {
        m.setxattr_flags("xf", "user.k", b"z", 1)
    });
    p.both("XATTR_REPLACE missing", |m| {
        m.setxattr_flags("xf", "user.none", b"z", 2)
    });
    p.both("XATTR_REPLACE existing", |m| {
        m.setxattr_flags("xf", "user.k", b"w", 2)
    });
    p.both("remove lower xattr", |m| m.removexattr("d", "user.dk"));
    p.both("remove missing", |m| m.removexattr("d", "user.dk"));
    p.both("values", |m| {
        ["xf", "f1", "d", "d/sub", "m"]
            .map(|f| m.xattr_values(f))
            .to_vec()
    });
    p.both("content unchanged", |m| (m.read("xf"), m.read("f1")));
    p.both("xattr on missing file", |m| {
        m.setxattr("nope", "user.a", b"1")
    });
    p.both("empty value", |m| m.setxattr("f2", "user.empty", b""));
    p.both("get empty", |m| m.getxattr("f2", "user.empty"));
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
}

#[test]
fn rename_lower_file() {
    let p = pair();
    ino_kept(&p, "ino across rename", "f1", "f1r", |m| {
        m.rename("f1", "f1r").unwrap();
    });
    p.both("old name gone", |m| m.stat("f1"));
    p.both("new name", |m| (m.stat("f1r"), m.read("f1r")));
    p.both("rename over lower file", |m| m.rename("f1r", "f2"));
    p.both("after rename over", |m| (m.read("f2"), m.stat("f1r")));
    p.both("rename into lower dir", |m| m.rename("exec", "d/sub/exec"));
    p.both("rename across merged dirs", |m| m.rename("m/low", "d/low"));
    p.both("listings", |m| {
        (
            m.readdir(""),
            m.readdir("d"),
            m.readdir("m"),
            m.readdir("d/sub"),
        )
    });
    p.both("rename symlink", |m| m.rename("sym", "d/sym"));
    p.both("readlink moved symlink", |m| {
        (m.readlink("d/sym"), m.read("d/sym"))
    });
    p.both("rename fifo", |m| m.rename("fifo", "m/fifo"));
    p.both("rename to same name", |m| m.rename("f2", "f2"));
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
}

#[test]
fn rename_lower_dir() {
    let p = pair();
    let inos = p.both_val("inos before", |m| {
        ["d", "d/a", "d/sub", "d/sub/x"]
            .map(|f| m.ino(f).is_ok())
            .to_vec()
    });
    assert!(inos.iter().all(|x| *x));
    let before_s: Vec<_> = ["d", "d/a", "d/sub", "d/sub/x"]
        .iter()
        .map(|f| p.s.ino(f))
        .collect();
    let before_o: Vec<_> = ["d", "d/a", "d/sub", "d/sub/x"]
        .iter()
        .map(|f| p.o.ino(f))
        .collect();
    p.both("rename lower dir (no EXDEV)", |m| m.rename("d", "d2"));
    p.both("old gone", |m| m.stat("d"));
    for dir in ["d2", "d2/sub"] {
        p.both(&format!("readdir {dir}"), |m| m.readdir(dir));
    }
    p.both("read inside", |m| (m.read("d2/a"), m.read("d2/sub/x")));
    p.both("xattr kept", |m| m.xattrs("d2"));
    let after_s: Vec<_> = ["d2", "d2/a", "d2/sub", "d2/sub/x"]
        .iter()
        .map(|f| p.s.ino(f))
        .collect();
    let after_o: Vec<_> = ["d2", "d2/a", "d2/sub", "d2/sub/x"]
        .iter()
        .map(|f| p.o.ino(f))
        .collect();
    assert_eq!(
        before_o, after_o,
        "overlayfs: inode numbers changed across dir rename"
    );
    assert_eq!(
        before_s, after_s,
        "strata: inode numbers changed across dir rename"
    );
    p.both("create inside renamed", |m| m.put("d2/new", "n\n"));
    p.both("write lower file inside renamed", |m| {
        m.write_at("d2/sub/x", 0, "X")
    });
    p.both("unlink inside renamed", |m| m.unlink("d2/b"));
    p.both("listing", |m| (m.readdir("d2"), m.read("d2/sub/x")));
    p.both("mkdir at old name is empty", |m| {
        (m.mkdir("d", 0o755), m.readdir("d"))
    });
    p.both("rename nested lower dir out", |m| {
        m.rename("d2/sub", "sub2")
    });
    p.both("listing after nested", |m| {
        (m.readdir("sub2"), m.readdir("d2"), m.read("sub2/x"))
    });
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
    let again_s: Vec<_> = ["d2", "d2/a"].iter().map(|f| p.s.ino(f)).collect();
    assert_eq!(
        &before_s[..2],
        &again_s[..],
        "strata: inode numbers changed across remount"
    );
    p.both("rename back", |m| m.rename("d2", "d3"));
    p.both("listing after second rename", |m| {
        (m.readdir("d3"), m.read("d3/a"))
    });
    p.remount();
    p.same_tree("after second remount");
}

#[test]
fn rename_merged_dir() {
    let p = pair();
    p.both("rename merged dir (no EXDEV)", |m| m.rename("m", "m2"));
    p.both("listing", |m| {
        (
            m.readdir("m2"),
            m.read("m2/low"),
            m.read("m2/top"),
            m.stat("m"),
        )
    });
    p.both("new dir at old name is empty", |m| {
        (m.mkdir("m", 0o700), m.readdir("m"))
    });
    p.both("create in renamed", |m| m.put("m2/new", "x"));
    p.both("rename lower file out of renamed dir", |m| {
        m.rename("m2/low", "m/low")
    });
    p.both("listings", |m| (m.readdir("m"), m.readdir("m2")));
    p.both("rename opaque dir", |m| m.rename("opq_wh", "opq2"));
    p.both("opaque stays opaque", |m| m.readdir("opq2"));
    p.both("rename dir with whiteouts", |m| m.rename("hide", "hide2"));
    p.both("whiteouts still hide", |m| {
        (m.readdir("hide2"), m.stat("hide2/wf"))
    });
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
    p.both("rename renamed dir into a new dir", |m| {
        (
            m.mkdir("nest", 0o755),
            m.rename("m2", "nest/m3"),
            m.readdir("nest/m3"),
        )
    });
    p.remount();
    p.same_tree("after second remount");
}

#[test]
fn rename_noreplace_and_exchange() {
    let p = pair();
    p.both("NOREPLACE onto existing", |m| {
        m.rename_noreplace("f1", "f2")
    });
    p.both("NOREPLACE onto whited-out name", |m| {
        m.rename_noreplace("f1", "hide/wf")
    });
    p.both("NOREPLACE onto fresh", |m| m.rename_noreplace("f2", "f3"));
    p.both("EXCHANGE two lower files", |m| {
        m.rename_exchange("f1", "shadow")
    });
    p.both("contents swapped", |m| (m.read("f1"), m.read("shadow")));
    p.both("EXCHANGE file and dir", |m| m.rename_exchange("exec", "d"));
    p.both("after file/dir exchange", |m| {
        (m.readdir("exec"), m.read("d"), m.stat("d"))
    });
    p.both("EXCHANGE merged dir and lower dir", |m| {
        m.rename_exchange("m", "exec")
    });
    p.both("after dir exchange", |m| {
        (m.readdir("m"), m.readdir("exec"))
    });
    p.both("EXCHANGE with missing", |m| {
        m.rename_exchange("f1", "missing")
    });
    p.both("listing", |m| m.readdir(""));
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
}

#[test]
fn rmdir_merged_dir_empty_by_whiteouts() {
    let p = pair();
    p.both("rmdir dir whose lower entries are all whited out", |m| {
        m.rmdir("ghost")
    });
    p.both("gone", |m| m.stat("ghost"));
    p.both("rmdir non-empty merged", |m| m.rmdir("m"));
    p.both("empty it", |m| {
        (m.unlink("m/low"), m.unlink("m/top"), m.readdir("m"))
    });
    p.both("rmdir emptied merged dir", |m| m.rmdir("m"));
    p.both("rmdir lower dir with subdir", |m| m.rmdir("d"));
    p.both("empty lower dir", |m| {
        (
            m.unlink("d/a"),
            m.unlink("d/b"),
            m.unlink("d/sub/x"),
            m.rmdir("d/sub"),
            m.rmdir("d"),
        )
    });
    p.both("listing", |m| m.readdir(""));
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
}

#[test]
fn recreated_dir_is_opaque() {
    let p = pair();
    p.both("remove d", |m| {
        (
            m.unlink("d/a"),
            m.unlink("d/b"),
            m.unlink("d/sub/x"),
            m.rmdir("d/sub"),
            m.rmdir("d"),
        )
    });
    p.both("recreate d", |m| m.mkdir("d", 0o755));
    p.both("recreated d is empty", |m| {
        (m.readdir("d"), m.stat("d/a"), m.stat("d/sub"))
    });
    p.both("mkdir sub again", |m| {
        (m.mkdir("d/sub", 0o755), m.readdir("d/sub"))
    });
    p.both("remove merged m and recreate", |m| {
        (
            m.unlink("m/low"),
            m.unlink("m/top"),
            m.rmdir("m"),
            m.mkdir("m", 0o755),
            m.readdir("m"),
        )
    });
    p.both("unlink and recreate file", |m| {
        (m.unlink("f1"), m.put("f1", "new\n"), m.read("f1"))
    });
    p.both("replace dir by file", |m| {
        (m.rmdir("ghost"), m.put("ghost", "file\n"), m.stat("ghost"))
    });
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
    p.both("still empty after remount", |m| {
        (m.readdir("d"), m.readdir("d/sub"), m.readdir("m"))
    });
}

#[test]
fn link_lower_files() {
    let p = pair();
    p.both("link lower file", |m| m.link("f1", "f1link"));
    p.both("same inode", |m| {
        (
            m.ino("f1") == m.ino("f1link"),
            m.stat("f1"),
            m.stat("f1link"),
        )
    });
    p.both("write through new link", |m| {
        m.write_at("f1link", 0, "LINK")
    });
    p.both("visible through old name", |m| {
        (m.read("f1"), m.ino("f1") == m.ino("f1link"))
    });
    p.both("link into other dir", |m| m.link("d/a", "m/alink"));
    p.both("nlinks", |m| (m.stat("d/a"), m.stat("m/alink")));
    p.both("link dir", |m| m.link("d", "dlink"));
    p.both("link onto existing", |m| m.link("f2", "shadow"));
    p.both("link missing", |m| m.link("nope", "nope2"));
    p.both("link symlink", |m| {
        (m.link("sym", "sym2"), m.readlink("sym2"))
    });
    p.both("unlink one link", |m| {
        (m.unlink("f1"), m.stat("f1link"), m.read("f1link"))
    });
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
}

#[test]
fn lower_hardlinks_stay_one_inode() {
    let p = pair();
    p.both("one inode before", |m| {
        (m.ino("hl1") == m.ino("hl2"), m.stat("hl1"))
    });
    p.both("copy up one of them", |m| m.write_at("hl1", 0, "HARD"));
    p.both("other name sees the write", |m| {
        (m.read("hl2"), m.read("hl1"))
    });
    p.both("one inode after copy-up", |m| {
        (m.ino("hl1") == m.ino("hl2"), m.stat("hl1"), m.stat("hl2"))
    });
    p.both("chmod through other", |m| {
        (m.chmod("hl2", 0o600), m.stat("hl1"))
    });
    let mut p = p;
    p.remount();
    p.both("one inode after remount", |m| {
        (m.ino("hl1") == m.ino("hl2"), m.read("hl2"))
    });
    p.same_tree("after remount");
}

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
fn never_exdev() {
    let p = pair();
    let cases = [
        ("f1", "m/f1"),
        ("d", "m/d"),
        ("m", "opq_tr/m"),
        ("opq_tr", "hide/opq"),
        ("dsym", "d_sym_moved"),
        ("hide/keep", "keep"),
        ("big", "hide/big"),
    ];
    for (a, b) in cases {
        p.both(&format!("rename {a} -> {b}"), |m| m.rename(a, b));
        assert_ne!(p.s.stat(b).err(), Some(Errno::EXDEV));
    }
    p.both("listings", |m| {
        (
            m.readdir(""),
            m.readdir("m"),
            m.readdir("hide"),
            m.readdir("hide/opq"),
        )
    });
    p.both("deep read", |m| {
        (m.read("hide/opq/m/d/sub/x"), m.read("hide/opq/m/low"))
    });
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
}

#[test]
fn symlinks_fifos_devices() {
    let p = pair();
    p.both("symlink", |m| m.symlink("../f2", "d/up"));
    p.both("readlink", |m| {
        (m.readlink("d/up"), m.read("d/up"), m.stat("d/up"))
    });
    p.both("dangling symlink", |m| {
        (m.symlink("nowhere", "dang"), m.read("dang"))
    });
    p.both("readlink lower", |m| {
        (m.readlink("sym"), m.readlink("dsym"), m.readdir("dsym"))
    });
    p.both("mkfifo", |m| {
        (m.mkfifo("m/fifo2", 0o640), m.stat("m/fifo2"))
    });
    p.both("lower fifo", |m| m.stat("fifo"));
    p.both("mknod char 1/3", |m| {
        (m.mknod_char("null", 0o666, 1, 3), m.stat("null"))
    });
    p.both("listing", |m| {
        (m.readdir(""), m.readdir("m"), m.readdir("d"))
    });
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
}

#[test]
fn fallocate_and_seek() {
    let p = pair();
    p.both("SEEK_DATA 0 on sparse lower", |m| {
        m.seek("sparse", 0, libc::SEEK_DATA)
    });
    p.both("SEEK_HOLE 0 on sparse lower", |m| {
        m.seek("sparse", 0, libc::SEEK_HOLE)
    });
    p.both("SEEK_DATA past first hole", |m| {
        m.seek("sparse", 1 << 20, libc::SEEK_DATA)
    });
    p.both("SEEK_DATA past end", |m| {
        m.seek("sparse", 8 << 20, libc::SEEK_DATA)
    });
    p.both("sparse content", |m| {
        (
            m.pread("sparse", 8, 0),
            m.pread("sparse", 8, 2 << 20),
            m.stat("sparse"),
        )
    });
    p.both("fallocate extend", |m| m.fallocate("f1", 0, 0, 1 << 16));
    p.both("after extend", |m| (m.stat("f1"), m.read("f1")));
    p.both("fallocate keep size", |m| {
        m.fallocate("f2", libc::FALLOC_FL_KEEP_SIZE, 0, 1 << 16)
    });
    p.both("after keep size", |m| (m.stat("f2"), m.read("f2")));
    p.both("punch hole", |m| {
        m.fallocate(
            "big",
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            4096,
            8192,
        )
    });
    p.both("after punch", |m| (m.stat("big"), m.read("big")));
    p.both("SEEK_HOLE after punch", |m| {
        m.seek("big", 0, libc::SEEK_HOLE)
    });
    p.both("SEEK_DATA in punched hole", |m| {
        m.seek("big", 4096, libc::SEEK_DATA)
    });
    p.both("fallocate on dir", |m| m.fallocate("d", 0, 0, 10));
}

#[test]
fn statfs_is_sane() {
    let p = pair();
    let info = p.both_val("statfs root", |m| m.statfs(""));
    let info = info.unwrap();
    assert_eq!(info.namemax, 255);
    assert!(info.bsize_positive && info.blocks_positive && info.free_le_blocks);
    p.both("statfs lower file", |m| m.statfs("d/a"));
}

#[test]
fn open_unlinked_file() {
    let p = pair();
    p.both("lower file", |m| m.open_unlink_fstat("f1"));
    p.both("new file", |m| {
        (m.put("new", "new"), m.open_unlink_fstat("new"))
    });
    p.both("copied-up file", |m| {
        (m.write_at("f2", 0, "F"), m.open_unlink_fstat("f2"))
    });
    p.both("names gone", |m| {
        (m.stat("f1"), m.stat("new"), m.stat("f2"))
    });
    p.both("hard link: other name keeps the inode", |m| {
        (m.open_unlink_fstat("hl1"), m.stat("hl2"))
    });
}

#[test]
fn copy_file_range_fsync_flock() {
    let p = pair();
    p.both("copy_file_range from lower", |m| {
        m.copy_range("big", "bigcopy")
    });
    p.both("copied", |m| {
        (
            m.read("bigcopy").map(|v| v.len()),
            m.read("bigcopy") == m.read("big"),
        )
    });
    p.both("copy_file_range onto lower file", |m| {
        m.copy_range("f2", "f1")
    });
    p.both("read", |m| m.read("f1"));
    p.both("fsync new file", |m| m.put_fsync("synced", b"synced"));
    p.both("flock on lower file", |m| m.flock_conflict("f2"));
    p.both("flock on new file", |m| m.flock_conflict("synced"));
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
fn delete_lower_entries() {
    let p = pair();
    p.both("unlink lower file", |m| m.unlink("f1"));
    p.both("unlink shadowing file", |m| m.unlink("shadow"));
    p.both("shadowed lower file does not reappear", |m| {
        m.stat("shadow")
    });
    p.both("unlink lower symlink", |m| m.unlink("sym"));
    p.both("unlink lower fifo", |m| m.unlink("fifo"));
    p.both("unlink one hard link", |m| {
        (m.unlink("hl1"), m.stat("hl2"), m.read("hl2"))
    });
    p.both("listing", |m| m.readdir(""));
    p.both("recreate with other type", |m| {
        (m.mkdir("f1", 0o700), m.readdir("f1"), m.stat("f1"))
    });
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
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

#[test]
fn mmap_write_copies_up() {
    let p = pair();
    p.both("shared writable mmap of a lower file", |m| {
        let fd = strata_tests::sys::open(&m.p("big"), libc::O_RDWR, 0)?;
        let len = 300_000usize;
        // SAFETY: mapping a file we opened read-write; unmapped below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        // SAFETY: ptr maps `len` bytes.
        let bytes = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) };
        bytes[100..110].copy_from_slice(b"MMAPWRITE!");
        bytes[len - 1] = b'E';
        // SAFETY: same mapping.
        let r = unsafe { libc::msync(ptr, len, libc::MS_SYNC) };
        unsafe { libc::munmap(ptr, len) };
        if r != 0 {
            return Err(Errno::last());
        }
        Ok(())
    });
    p.both("read back", |m| {
        (
            m.pread("big", 20, 95),
            m.pread("big", 4, 299_998),
            m.stat("big"),
        )
    });
    let mut p = p;
    p.remount();
    p.both("after remount", |m| {
        (m.pread("big", 20, 95), m.pread("big", 4, 299_998))
    });
}
