//! Options podman and fstab users pass (SELinux contexts with commas, noxattrs=1,
//! fast_ino_check=1), and layers written by fuse-overlayfs reused as strata lowers, with
//! /usr/bin/fuse-overlayfs as the oracle.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use strata_tests::peer::{run_bounded, Peer, PeerMount};
use strata_tests::{strata_bin, sys};

const CONTEXT: &str = "context=\"system_u:object_r:container_file_t:s0:c1,c2\"";

#[test]
fn selinux_contexts_with_commas_are_accepted() {
    // containers/storage passes context="..." on every SELinux host; the comma inside the
    // quotes is part of the value, not an option separator.
    for extra in [
        CONTEXT.to_string(),
        "fscontext=\"system_u:object_r:container_file_t:s0:c1,c2\",\
         defcontext=\"system_u:object_r:container_file_t:s0:c3,c4\",\
         rootcontext=\"system_u:object_r:container_file_t:s0:c5,c6\""
            .to_string(),
        format!("{CONTEXT},fast_ino_check=1,fast_ino=1"),
    ] {
        let mut m = PeerMount::new(Peer::Strata, "context", &extra);
        std::fs::write(m.lower.join("f"), "lower\n").unwrap();
        m.mount();
        assert_eq!(std::fs::read(m.p("f")).unwrap(), b"lower\n", "{extra}");
        std::fs::write(m.p("g"), "new\n").unwrap();
        assert_eq!(std::fs::read(m.upper.join("g")).unwrap(), b"new\n");
        m.unmount();
    }
    // The same through `strata mount -o`.
    let m = PeerMount::new(Peer::Strata, "context-cli", CONTEXT);
    let log = m.dir.join("cli.log");
    let (ok, text) = run_bounded(
        Command::new(strata_bin())
            .arg("mount")
            .arg("-o")
            .arg(m.options())
            .arg(&m.mnt),
        &log,
    );
    assert!(ok, "strata mount -o {}: {text}", m.options());
    assert!(strata_tests::is_mounted(&m.mnt));
    strata_tests::mount::unmount_path(&m.mnt).unwrap();
}

/// Every xattr call's result on `p`, as text.
fn xattr_calls(p: &Path) -> Vec<String> {
    vec![
        format!("get user.a {:?}", sys::lgetxattr(p, "user.a")),
        format!("list {:?}", sys::llistxattr(p)),
        format!("set user.b {:?}", sys::lsetxattr(p, "user.b", b"2", 0)),
        format!("remove user.a {:?}", sys::lremovexattr(p, "user.a")),
        format!("get again {:?}", sys::lgetxattr(p, "user.a")),
    ]
}

#[test]
fn noxattrs_answers_as_fuse_overlayfs() {
    let mut seen = Vec::new();
    for peer in Peer::BOTH {
        let mut m = PeerMount::new(peer, "noxattrs", "noxattrs=1");
        std::fs::write(m.lower.join("f"), "x").unwrap();
        sys::lsetxattr(&m.lower.join("f"), "user.a", b"1", 0).unwrap();
        m.mount();
        let calls = xattr_calls(&m.p("f"));
        // Nothing was written to the upper either.
        let up = sys::llistxattr(&m.upper.join("f")).unwrap_or_default();
        assert!(
            !up.contains(&"user.b".to_string()),
            "{}: {up:?}",
            peer.label()
        );
        if peer == Peer::Strata {
            assert!(!m.upper.join("f").exists(), "noxattrs=1 copied f up");
        }
        seen.push(calls);
    }
    // fuse-overlayfs 1.10 forgets the option in removexattr (it copies the file up and
    // removes the xattr); strata refuses that too: no xattrs through the mount.
    assert_eq!(seen[1][3], "remove user.a Ok(())", "fuse-overlayfs changed");
    seen[1][3] = "remove user.a Err(EOPNOTSUPP)".into();
    assert_eq!(seen[0], seen[1], "strata (left) vs fuse-overlayfs (right)");
    assert!(seen[0][0].contains("EOPNOTSUPP"), "{:?}", seen[0]);
    // Without the option xattrs work.
    let mut m = PeerMount::new(Peer::Strata, "xattrs-on", "noxattrs=0");
    std::fs::write(m.lower.join("f"), "x").unwrap();
    sys::lsetxattr(&m.lower.join("f"), "user.a", b"1", 0).unwrap();
    m.mount();
    assert_eq!(sys::lgetxattr(&m.p("f"), "user.a"), Ok(b"1".to_vec()));
}

/// The xattrs fuse-overlayfs and overlayfs keep for themselves, and one of the user's.
const FOREIGN: &[&str] = &[
    "user.fuseoverlayfs.origin",
    "user.fuseoverlayfs.opaque",
    "trusted.overlay.origin",
    "user.overlay.redirect",
    "user.mine",
];

#[test]
fn foreign_union_xattrs_are_hidden_as_fuse_overlayfs_hides_them() {
    let mut seen = Vec::new();
    for peer in Peer::BOTH {
        let mut m = PeerMount::new(peer, "foreign-xattrs", "");
        let f = m.lower.join("f");
        std::fs::write(&f, "x").unwrap();
        for n in FOREIGN {
            sys::lsetxattr(&f, n, b"v", 0).unwrap();
        }
        m.mount();
        let mut got = vec![format!("list {:?}", sys::llistxattr(&m.p("f")))];
        for n in FOREIGN {
            got.push(format!("get {n} {:?}", sys::lgetxattr(&m.p("f"), n)));
        }
        // A copy-up (chmod) must not carry them into what the mount shows either.
        sys::chmod(&m.p("f"), 0o640).unwrap();
        got.push(format!("after copy-up {:?}", sys::llistxattr(&m.p("f"))));
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1], "strata (left) vs fuse-overlayfs (right)");
    assert_eq!(seen[0][0], "list Ok([\"user.mine\"])");
}

#[test]
fn user_fuseoverlayfs_opaque_makes_a_directory_opaque() {
    // fuse-overlayfs marks an opaque directory with user.fuseoverlayfs.opaque=y where it
    // may not write trusted.* (rootless); such an upper is a lower for strata.
    let mut seen = Vec::new();
    for peer in Peer::BOTH {
        let mut m = PeerMount::new(peer, "fovl-opaque", "");
        let l2 = m.dir.join("lower2");
        std::fs::create_dir_all(l2.join("d")).unwrap();
        std::fs::write(l2.join("d/old"), "old").unwrap();
        std::fs::create_dir_all(m.lower.join("d")).unwrap();
        std::fs::write(m.lower.join("d/new"), "new").unwrap();
        sys::lsetxattr(&m.lower.join("d"), "user.fuseoverlayfs.opaque", b"y", 0).unwrap();
        m.extra = String::new();
        let top = m.lower.clone();
        m.lower = format!("{}:{}", top.display(), l2.display()).into();
        m.mount();
        seen.push(list(&m.mnt));
    }
    assert_eq!(seen[0], seen[1], "strata (left) vs fuse-overlayfs (right)");
    assert!(!seen[0].contains_key("d/old"), "{:?}", seen[0]);
}

/// Every path under `root` with kind, mode, size, content and xattr names.
fn list(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    let mut budget = 10_000;
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            budget -= 1;
            assert!(budget > 0, "tree too large");
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            let content = if md.is_file() {
                String::from_utf8_lossy(&std::fs::read(&p).unwrap()).to_string()
            } else {
                String::new()
            };
            let xattrs = sys::llistxattr(&p).unwrap_or_default();
            out.insert(
                rel,
                format!(
                    "mode {:o} uid {} size {} {content:?} {xattrs:?}",
                    md.mode(),
                    md.uid(),
                    if md.is_dir() { 0 } else { md.size() }
                ),
            );
            if md.is_dir() {
                todo.push(p);
            }
        }
    }
    out
}

#[test]
fn an_upper_written_by_fuse_overlayfs_is_a_strata_lower() {
    // A real fuse-overlayfs run writes whiteouts, opaque directories, copy-ups with its
    // origin xattr; its upper stacked on its lower must read the same through strata.
    let mut f = PeerMount::new(Peer::FuseOverlayfs, "fovl-upper", "");
    let l = &f.lower;
    for d in ["keep", "gone", "redone", "redone/sub"] {
        std::fs::create_dir_all(l.join(d)).unwrap();
    }
    for (p, c) in [
        ("keep/a", "a"),
        ("keep/b", "b"),
        ("gone/x", "x"),
        ("redone/old", "old"),
        ("redone/sub/deep", "deep"),
        ("top", "top"),
        ("chmodded", "c"),
    ] {
        std::fs::write(l.join(p), c).unwrap();
    }
    f.mount();
    std::fs::remove_file(f.p("keep/b")).unwrap();
    std::fs::remove_dir_all(f.p("gone")).unwrap();
    std::fs::remove_dir_all(f.p("redone")).unwrap();
    std::fs::create_dir(f.p("redone")).unwrap();
    std::fs::write(f.p("redone/fresh"), "fresh").unwrap();
    std::fs::write(f.p("top"), "rewritten").unwrap();
    sys::chmod(&f.p("chmodded"), 0o600).unwrap();
    sys::lsetxattr(&f.p("keep/a"), "user.mine", b"1", 0).unwrap();
    let want = list(&f.mnt);
    f.unmount();
    // Sanity: fuse-overlayfs left its own records in the upper.
    assert!(
        sys::llistxattr(&f.upper.join("chmodded"))
            .unwrap()
            .iter()
            .any(|n| n.starts_with("user.fuseoverlayfs.")),
        "fuse-overlayfs wrote no origin xattr: the test does not test anything"
    );
    let mut s = PeerMount::new(Peer::Strata, "fovl-upper-strata", "");
    s.lower = format!("{}:{}", f.upper.display(), f.lower.display()).into();
    s.mount();
    let got = list(&s.mnt);
    assert_eq!(
        got, want,
        "strata over fuse-overlayfs's upper (left) vs fuse-overlayfs"
    );
}
