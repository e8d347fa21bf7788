//! Whiteouts, creation over them, renames, links and removal of lower entries.

use super::*;

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

/// The kernel keeps negative entries and directory listings from strata (issue 19): a name
/// looked up in vain, then made by every kind of creation, and listings read before and
/// after each change (so a cached listing must be dropped) match overlayfs.
#[test]
fn misses_and_listings_stay_current() {
    let p = pair();
    let dirs = ["", "d", "d/sub", "m", "hide", "opq_tr"];
    for round in 0..2 {
        for d in dirs {
            p.both(&format!("readdir /{d} ({round})"), |m| m.readdir(d));
        }
        for n in ["d/new", "d/sub/nd", "m/ln", "hide/wf", "opq_tr/below", "sy"] {
            p.both(&format!("miss {n} ({round})"), |m| m.stat(n));
        }
    }
    p.both("create after miss", |m| m.put("d/new", "n\n"));
    p.both("mkdir after miss", |m| m.mkdir("d/sub/nd", 0o755));
    p.both("link after miss", |m| m.link("m/low", "m/ln"));
    p.both("create over whiteout after miss", |m| {
        m.put("hide/wf", "w\n")
    });
    p.both("mkfifo in opaque dir after miss", |m| {
        m.mkfifo("opq_tr/below", 0o600)
    });
    p.both("symlink after miss", |m| m.symlink("f1", "sy"));
    p.both("rename away", |m| m.rename("d/a", "d/sub/a2"));
    p.both("unlink", |m| m.unlink("m/top"));
    p.both("rmdir after emptying", |m| {
        (m.unlink("d/sub/x"), m.unlink("d/sub/a2"))
    });
    for d in dirs {
        p.both(&format!("readdir /{d} after changes"), |m| m.readdir(d));
        p.both(&format!("readdir /{d} again"), |m| m.readdir(d));
    }
    for n in [
        "d/new",
        "d/sub/nd",
        "m/ln",
        "hide/wf",
        "opq_tr/below",
        "sy",
        "d/a",
        "m/top",
    ] {
        p.both(&format!("stat {n} after changes"), |m| m.stat(n));
    }
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
}
