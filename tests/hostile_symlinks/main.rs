//! Branches containing hostile symlinks (`etc -> /etc`-like absolute links, `../../..`
//! relative escapes, symlinks where another branch has a directory, symlinks planted
//! in the upper or work dir behind strata's back) must never make the daemon read or
//! write outside its branches. Every hostile link points at a canary directory
//! outside the branches, which must stay byte-for-byte, time-for-time unchanged and
//! whose secret must never be read back through the mount.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use strata_tests::sys::{self, Dir};
use strata_tests::{fnv1a, Errno, FileKind, Fixture, Layer, Mounted, TempDir};

const SECRET: &str = "CANARY-SECRET";

/// A directory outside every branch that hostile symlinks point at.
struct Canary {
    dir: TempDir,
    before: BTreeMap<String, String>,
}

impl Canary {
    fn new() -> Self {
        let dir = TempDir::new("canary");
        std::fs::write(dir.join("secret"), SECRET).unwrap();
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/passwd"), format!("{SECRET} passwd")).unwrap();
        std::fs::create_dir_all(dir.join("sub/deep")).unwrap();
        std::fs::write(dir.join("sub/deep/file"), format!("{SECRET} deep")).unwrap();
        std::fs::write(dir.join("f"), format!("{SECRET} f")).unwrap();
        for p in [
            "",
            "etc",
            "sub",
            "sub/deep",
            "secret",
            "etc/passwd",
            "sub/deep/file",
            "f",
        ] {
            let t = if p.is_empty() {
                dir.path.clone()
            } else {
                dir.join(p)
            };
            sys::lutimens(&t, (1_000_000, 0), (1_000_000, 0)).unwrap();
        }
        let before = snapshot(&dir.path);
        Canary { dir, before }
    }

    /// Absolute path of the canary (or something in it).
    fn abs(&self, p: &str) -> String {
        if p.is_empty() {
            self.dir.path.to_string_lossy().into_owned()
        } else {
            self.dir.join(p).to_string_lossy().into_owned()
        }
    }

    /// A relative link target that, from a link `depth` directories below a branch
    /// root (0: in the root), climbs out of the branch and into the canary.
    fn rel_from_branch(&self, depth: usize, p: &str) -> String {
        let name = self
            .dir
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut s = "../".repeat(depth + 2);
        s.push_str(&name);
        if !p.is_empty() {
            s.push('/');
            s.push_str(p);
        }
        s
    }

    #[track_caller]
    fn assert_untouched(&self, what: &str) {
        let now = snapshot(&self.dir.path);
        if now != self.before {
            let mut lines = Vec::new();
            for (k, v) in &self.before {
                match now.get(k) {
                    None => lines.push(format!("  removed {k}: {v}")),
                    Some(n) if n != v => lines.push(format!("  changed {k}:\n    {v}\n    {n}")),
                    _ => {}
                }
            }
            for (k, v) in &now {
                if !self.before.contains_key(k) {
                    lines.push(format!("  created {k}: {v}"));
                }
            }
            panic!(
                "{what}: the canary outside the branches changed:\n{}",
                lines.join("\n")
            );
        }
    }
}

/// Everything about a tree except atimes: type, mode, owner, size, mtime, ctime,
/// content hash, link target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let p = root.join(&rel);
        let st = sys::lstat(&p).unwrap();
        let kind = FileKind::from_mode(st.st_mode);
        let extra = match kind {
            FileKind::File => format!("{:x}", fnv1a(&std::fs::read(&p).unwrap())),
            FileKind::Symlink => String::from_utf8_lossy(&sys::readlink(&p).unwrap()).into_owned(),
            _ => String::new(),
        };
        out.insert(
            rel.to_string_lossy().into_owned(),
            format!(
                "{kind:?} {:o} {}:{} size={} mtime={}.{} ctime={}.{} nlink={} {extra}",
                st.st_mode,
                st.st_uid,
                st.st_gid,
                if kind == FileKind::Dir { 0 } else { st.st_size },
                st.st_mtime,
                st.st_mtime_nsec,
                st.st_ctime,
                st.st_ctime_nsec,
                st.st_nlink
            ),
        );
        if kind == FileKind::Dir {
            for (name, _, _) in sys::readdir(&p).unwrap() {
                stack.push(rel.join(name));
            }
        }
    }
    out
}

/// Read everything readable in the mount (not following symlinks out of it) and
/// assert the canary's secret never shows.
#[track_caller]
fn assert_no_secret(m: &Mounted) {
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let Ok(list) = m.readdir(&dir) else { continue };
        for (name, kind) in list {
            let p = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            match kind {
                FileKind::Dir => stack.push(p),
                FileKind::File => {
                    if let Ok(d) = m.read(&p) {
                        assert!(
                            !String::from_utf8_lossy(&d).contains(SECRET),
                            "{}: /{p} shows the canary's content",
                            m.label()
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

/// A branch full of symlinks pointing out of it.
fn hostile_layer(c: &Canary) -> Layer {
    Layer::new()
        .symlink("etc", &c.abs("etc"))
        .symlink("up", &c.abs(""))
        .symlink("x", &c.rel_from_branch(0, ""))
        .symlink("dotdot", "../../..")
        .symlink("a/b/c/out", &c.rel_from_branch(3, "sub"))
        .symlink("a/b/abs", &c.abs("sub/deep"))
        .symlink("fsym", &c.abs("f"))
        .file("a/b/c/plain", "plain\n")
        .file("f", "branch f\n")
}

#[test]
fn symlinks_are_plain_entries() {
    let c = Canary::new();
    let fx = Fixture::new().lower(hostile_layer(&c));
    let p = fx.pair();
    // The links really do point at the canary when followed on the host.
    let l0 = &p.s.lowers[0];
    for (link, file) in [
        ("x", "secret"),
        ("a/b/c/out", "deep/file"),
        ("up", "secret"),
        ("etc", "passwd"),
    ] {
        let got = std::fs::read_to_string(l0.join(link).join(file)).unwrap();
        assert!(got.contains(SECRET), "{link} does not reach the canary");
    }
    p.same_tree("merged view of hostile links");
    for l in ["etc", "up", "x", "dotdot", "a/b/c/out", "a/b/abs", "fsym"] {
        p.both(&format!("readlink {l}"), |m| (m.readlink(l), m.stat(l)));
        p.both(&format!("O_NOFOLLOW open {l}"), |m| {
            sys::open(&m.p(l), libc::O_RDONLY | libc::O_NOFOLLOW, 0).map(drop)
        });
    }
    p.both("lchown etc", |m| m.chown("etc", 1000, 1000));
    p.both("utimes up (nofollow)", |m| {
        m.set_times("up", (5, 0), (5, 0))
    });
    p.both("lchmod x", |m| m.lchmod("x", 0o777));
    p.both("lsetxattr on symlink", |m| m.setxattr("x", "user.a", b"1"));
    p.both("rename etc", |m| m.rename("etc", "etc2"));
    p.both("rename nested out", |m| m.rename("a/b/c/out", "a/out2"));
    p.both("rename dir holding links", |m| m.rename("a/b", "b2"));
    p.both("link a symlink", |m| m.link("fsym", "fsym2"));
    p.both("unlink up", |m| m.unlink("up"));
    p.both("replace link by file", |m| {
        (m.unlink("dotdot"), m.put("dotdot", "now a file"))
    });
    p.both("create next to links", |m| m.put("b2/c/new", "new"));
    p.same_tree("after operations on the links");
    c.assert_untouched("operations on symlinks themselves");
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
    c.assert_untouched("after remount");
    assert_no_secret(&p.s);
}

/// Operations *through* the links, with path resolution confined to the mount
/// (RESOLVE_IN_ROOT): the kernel asks the daemon only for names inside the mount.
#[test]
fn resolution_through_links_stays_in_mount() {
    let c = Canary::new();
    let fx = Fixture::new().lower(hostile_layer(&c));
    let m = fx.strata();
    let root = sys::open(&m.mnt, libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
    for path in [
        "etc/passwd",
        "up/secret",
        "x/secret",
        "dotdot",
        "a/b/c/out/deep/file",
        "a/b/abs/file",
        "fsym",
    ] {
        let r = sys::openat2(&root, path, libc::O_RDONLY, 0, sys::RESOLVE_IN_ROOT)
            .and_then(|fd| sys::read_all(&fd));
        if let Ok(d) = &r {
            assert!(
                !String::from_utf8_lossy(d).contains(SECRET),
                "read {path} leaked"
            );
        }
        let w = sys::openat2(
            &root,
            path,
            libc::O_WRONLY | libc::O_CREAT,
            0o644,
            sys::RESOLVE_IN_ROOT,
        );
        if let Ok(fd) = w {
            let _ = sys::pwrite_all(&fd, b"written through", 0);
        }
        let n = sys::openat2(&root, path, libc::O_RDONLY, 0, sys::RESOLVE_NO_SYMLINKS);
        assert!(n.is_err(), "{path}: RESOLVE_NO_SYMLINKS should refuse");
    }
    c.assert_untouched("resolution confined to the mount");
    assert_no_secret(&m);
}

/// A symlink in a lower branch where a higher branch has a directory: the directory
/// wins and the merge stops there; the daemon must never list, read, create, copy up
/// or rename through the lower symlink.
#[test]
fn lower_symlink_under_upper_dir_is_not_merged() {
    let c = Canary::new();
    let top = Layer::new()
        .file("p/f", "p/f top\n")
        .file("q/own", "q/own top\n")
        .dir("r")
        .file("s/t/u", "deep top\n");
    let bottom = Layer::new()
        .symlink("p", &c.abs(""))
        .symlink("q", &c.rel_from_branch(0, ""))
        .symlink("r", "../../..")
        .dir("s")
        .symlink("s/t", &c.abs("sub"))
        .file("lowfile", "low\n");
    let fx = Fixture::new().lower(top).lower(bottom);
    let p = fx.pair();
    p.same_tree("initial");
    for d in ["p", "q", "r", "s", "s/t"] {
        p.both(&format!("readdir {d}"), |m| m.readdir(d));
    }
    for f in [
        "p/secret",
        "p/etc/passwd",
        "q/secret",
        "r/tmp",
        "s/t/deep/file",
    ] {
        p.both(&format!("stat {f}"), |m| (m.stat(f), m.read(f)));
    }
    p.both("create where the canary has a file", |m| {
        m.put("p/secret", "mine")
    });
    p.both("write lower file in merged-over dir", |m| {
        m.write_at("p/f", 0, "P")
    });
    p.both("mkdir", |m| m.mkdir("q/etc", 0o755));
    p.both("create deep", |m| m.put("q/etc/passwd", "mine"));
    p.both("chmod", |m| m.chmod("s/t/u", 0o600));
    p.both("setxattr dir", |m| m.setxattr("s/t", "user.a", b"1"));
    p.both("link", |m| m.link("p/f", "p/f2"));
    p.both("unlink", |m| m.unlink("q/own"));
    p.both("rename dir (redirect to where a lower symlink is)", |m| {
        m.rename("p", "p2")
    });
    p.both("listing renamed", |m| (m.readdir("p2"), m.read("p2/f")));
    p.both("rename nested", |m| m.rename("s/t", "t2"));
    p.both("listing renamed nested", |m| {
        (m.readdir("t2"), m.readdir("s"))
    });
    p.both("rmdir r", |m| m.rmdir("r"));
    p.same_tree("after operations");
    c.assert_untouched("lower symlink under an upper dir");
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
    c.assert_untouched("after remount");
    assert_no_secret(&p.s);
}

/// Symlinks planted in the upper dir before mounting: they are entries of the merged
/// view like any other and must not redirect copy-ups.
#[test]
fn upper_symlinks_planted_before_mount() {
    let c = Canary::new();
    let lower = Layer::new()
        .file("d/f", "lower d/f\n")
        .file("e/x", "lower e/x\n")
        .file("e/y", "lower e/y\n")
        .file("g/h/i", "lower g/h/i\n");
    let upper = Layer::new()
        .symlink("d", &c.abs(""))
        .symlink("e/x", &c.abs("secret"))
        .dir("g")
        .symlink("g/h", &c.rel_from_branch(1, "sub"));
    let fx = Fixture::new().lower(lower).upper(upper);
    let p = fx.pair();
    p.same_tree("initial");
    p.both("d is the planted symlink", |m| {
        (m.readlink("d"), m.stat("d"))
    });
    p.both("e/x is the planted symlink", |m| {
        (m.readlink("e/x"), m.readdir("e"))
    });
    p.both("copy up a sibling", |m| m.write_at("e/y", 0, "Y"));
    p.both("chmod sibling", |m| m.chmod("e/y", 0o600));
    p.both("rename planted link", |m| m.rename("e/x", "e/x2"));
    p.both("replace planted link", |m| m.rename("e/y", "e/x2"));
    p.both("g/h is a link", |m| (m.readlink("g/h"), m.readdir("g")));
    p.both("unlink planted dir link", |m| m.unlink("d"));
    p.both("lower d stays hidden? (overlayfs semantics)", |m| {
        (m.stat("d"), m.readdir(""))
    });
    p.both("mkdir where the link was", |m| {
        (m.mkdir("d", 0o755), m.readdir("d"))
    });
    p.both("create in it", |m| m.put("d/secret", "mine"));
    p.same_tree("after operations");
    c.assert_untouched("symlinks planted in the upper");
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
    c.assert_untouched("after remount");
    assert_no_secret(&p.s);
}

/// Reads through a held directory handle must never show the canary.
#[track_caller]
fn assert_handle_clean(d: &Dir, what: &str) {
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
