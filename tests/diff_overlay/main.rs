//! Hand-written differential cases: each operation / semantic of BRIEF §2 runs on a
//! strata mount and on a kernel overlayfs mount of identical branches, and the
//! outcomes (errno, content, listing, metadata, inode stability) must be equal.

use strata_tests::{long_name, max_name, Errno, FileKind, Fixture, Layer, Opq, Pair, Wh};

mod data;
mod mounts;
mod names;

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
