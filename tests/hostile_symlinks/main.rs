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

mod planted;

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
