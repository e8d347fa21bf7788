//! `uidmapping=` / `gidmapping=` against fuse-overlayfs itself: the same lower tree
//! mounted by both with the same options must show the same owners, and chown and
//! create must leave the same owners on disk.

use std::path::Path;
use strata_tests::peer::{owner, Peer, PeerMount};

/// Lower files and their on-disk owners.
const FILES: &[(&str, u32, u32)] = &[
    ("root", 0, 0),
    ("five", 5, 5),
    ("u1000", 1000, 2000),
    ("u1003", 1003, 1004),
    ("u1004", 1004, 1004),
    ("sub100005", 100005, 100005),
    ("high", 4_000_000, 4_000_000),
];

/// Ids a chown inside the mount asks for.
const CHOWNS: &[(u32, u32)] = &[(0, 0), (1, 1), (1000, 2000), (100000, 100000), (70000, 3)];

/// The option strings compared: the issue's cases and containers/storage's.
const MAPS: &[&str] = &[
    "uidmapping=0:1000:1,gidmapping=0:2000:1",
    "uidmapping=0:100000:65536,gidmapping=0:100000:65536",
    // podman run --userns=keep-id (uid 1003, gid 1004), with the leading colon.
    "uidmapping=:0:1:1003:1003:0:1:1004:1004:64533,gidmapping=:0:1:1004:1004:0:1:1005:1005:64532",
];

fn build_lower(lower: &Path) {
    std::os::unix::fs::lchown(lower, Some(0), Some(0)).unwrap();
    for (name, uid, gid) in FILES {
        let p = lower.join(name);
        std::fs::write(&p, name).unwrap();
        std::os::unix::fs::lchown(&p, Some(*uid), Some(*gid)).unwrap();
    }
    std::fs::create_dir(lower.join("dir")).unwrap();
    std::os::unix::fs::lchown(lower.join("dir"), Some(1000), Some(2000)).unwrap();
}

/// Everything a mount with `opts` shows and writes, as text lines to compare.
fn observe(peer: Peer, opts: &str) -> Vec<String> {
    let mut m = PeerMount::new(peer, "idmap", opts);
    build_lower(&m.lower);
    m.mount();
    let mut out = vec![format!("mount root {:?}", owner(&m.mnt))];
    out.push(format!("dir {:?}", owner(&m.p("dir"))));
    for (name, _, _) in FILES {
        out.push(format!("stat {name} {:?}", owner(&m.p(name))));
    }
    for (i, (uid, gid)) in CHOWNS.iter().enumerate() {
        let (name, _, _) = FILES[i % FILES.len()];
        let r = std::os::unix::fs::lchown(m.p(name), Some(*uid), Some(*gid))
            .map_err(|e| e.raw_os_error());
        out.push(format!(
            "chown {name} {uid}:{gid} -> {r:?}, shown {:?}, disk {:?}",
            owner(&m.p(name)),
            owner(&m.upper.join(name))
        ));
    }
    // A file and a directory created by root through the mount.
    std::fs::write(m.p("new"), "n").unwrap();
    std::fs::create_dir(m.p("newdir")).unwrap();
    for n in ["new", "newdir"] {
        out.push(format!(
            "create {n}: shown {:?}, disk {:?}",
            owner(&m.p(n)),
            owner(&m.upper.join(n))
        ));
    }
    m.unmount();
    out
}

#[test]
fn owners_and_chown_match_fuse_overlayfs() {
    for opts in MAPS {
        let s = observe(Peer::Strata, opts);
        let f = observe(Peer::FuseOverlayfs, opts);
        for (a, b) in s.iter().zip(&f) {
            assert_eq!(a, b, "with {opts}: strata (left) vs fuse-overlayfs (right)");
        }
        assert_eq!(s.len(), f.len());
    }
}

#[test]
fn the_issue_cases() {
    // uidmapping=0:1000:1,gidmapping=0:2000:1: a lower file owned 0:0 shows as 1000:2000.
    let mut m = PeerMount::new(
        Peer::Strata,
        "idmap-issue",
        "uidmapping=0:1000:1,gidmapping=0:2000:1",
    );
    build_lower(&m.lower);
    m.mount();
    assert_eq!(owner(&m.p("root")), (1000, 2000));
    assert_eq!(
        owner(&m.p("five")),
        (65534, 65534),
        "unmapped: the overflow id"
    );
    m.unmount();
    // uidmapping=0:100000:65536: chown 100000 inside is disk uid 0.
    let mut m = PeerMount::new(Peer::Strata, "idmap-issue2", "uidmapping=0:100000:65536");
    build_lower(&m.lower);
    m.mount();
    std::os::unix::fs::lchown(m.p("five"), Some(100000), None).unwrap();
    assert_eq!(owner(&m.upper.join("five")), (0, 5));
    assert_eq!(owner(&m.p("five")), (100000, 5));
}
