//! Hard links across a stack: a lower hard-link group copied up through the index at one
//! level keeps all its names one inode with the newest bytes after the upper is pushed
//! down (the index lives in the upper, `.wh..wh.index`), for every kind of file. Kernel
//! overlayfs keeps its index in the workdir, so after a rotation it is compared only up
//! to the rotation and strata is checked against the expected state.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use strata_tests::stack_pair::*;
use strata_tests::{Fixture, Layer, Mounted, Wh};

/// A hard link of a lower file: both names are one inode in the old upper, with the
/// bytes still below; after the rotation both read them, and writes at the next level
/// reach both names.
#[test]
fn hard_link_reads_after_rotation() {
    let mut p = Fixture::new()
        .lower(Layer::new().file("foo", "linked content\n"))
        .pair();
    p.both("ln foo foo2", |m| {
        std::fs::hard_link(m.p("foo"), m.p("foo2")).is_ok()
    });
    rotate(&mut p, "hard link");
    p.both("read foo2", |m| read(m, "foo2"));
    p.both("append foo2", |m| {
        let mut f = OpenOptions::new().append(true).open(m.p("foo2")).unwrap();
        f.write_all(b"more\n").is_ok()
    });
    p.both("read foo", |m| read(m, "foo"));
    p.same_tree("hard link written at level 2");
    // overlayfs keeps the copy of a lower hard link in its workdir's index, which does not
    // move with the upper: after this rotation its foo shows the level-1 bytes again and
    // is no longer foo2's inode. strata's copies are linked into the upper itself.
    let before = inos(&p.s);
    rotate_one(&mut p.o);
    rotate_one(&mut p.s);
    let want = b"linked content\nmore\n".to_vec();
    assert_eq!(read(&p.s, "foo"), want, "{}", p.s.log());
    assert_eq!(read(&p.s, "foo2"), want);
    let (a, b) = (
        std::fs::metadata(p.s.p("foo")).unwrap(),
        std::fs::metadata(p.s.p("foo2")).unwrap(),
    );
    assert_eq!(
        (a.ino(), a.nlink()),
        (b.ino(), 2),
        "foo and foo2 stay one inode"
    );
    assert_eq!(before.get("foo"), Some(&a.ino()), "st_ino stable");
}

/// A lower hard link (three names in the bottom layer) copied up through the index at
/// one level and written through another name at the next: the index copy moves with the
/// upper, so after every rotation all names are still one inode with the newest bytes,
/// even with the old workdirs gone. (overlayfs keeps its index in the workdir: there the
/// names come apart after a rotation, so strata is checked against the expected state.)
#[test]
fn lower_hard_link_index_moves_with_the_upper() {
    let mut p = Fixture::new()
        .lower(
            Layer::new()
                .file("h1", "hl\n")
                .hardlink("h2", "h1")
                .hardlink("d/h3", "h1"),
        )
        .pair();
    let names = ["h1", "h2", "d/h3"];
    p.both("chmod h1", |m| {
        std::fs::set_permissions(
            m.p("h1"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .is_ok()
    });
    p.same_tree("index copy at level 1");
    let ino = std::fs::metadata(p.s.p("h1")).unwrap().ino();
    let s = &mut p.s;
    // The workdir of each level is gone once its upper is pushed down, as with a layer.
    let drop_work_and_push = |s: &mut Mounted| {
        s.unmount();
        std::fs::remove_dir_all(s.work.as_ref().unwrap()).unwrap();
        push_down(s);
    };
    drop_work_and_push(s);
    let want = |content: &[u8]| -> Vec<(u32, u64, Vec<u8>, u64, u64)> {
        (0..3)
            .map(|_| (0o600, content.len() as u64, content.to_vec(), ino, 3))
            .collect()
    };
    assert_eq!(names_state(s, &names), want(b"hl\n"), "{}", s.log());
    // Written through the bottom layer's other name, without looking up the rest first.
    {
        let mut f = OpenOptions::new().append(true).open(s.p("d/h3")).unwrap();
        f.write_all(b"more\n").unwrap();
    }
    drop_work_and_push(s);
    assert_eq!(names_state(s, &names), want(b"hl\nmore\n"), "{}", s.log());
    drop_work_and_push(s);
    assert_eq!(names_state(s, &names), want(b"hl\nmore\n"), "{}", s.log());
    // Removing a name still drops the count of the others.
    std::fs::remove_file(s.p("h2")).unwrap();
    assert_eq!(std::fs::metadata(s.p("h1")).unwrap().nlink(), 2);
    assert_eq!(read(s, "d/h3"), b"hl\nmore\n");
    // The index is never visible.
    let root: Vec<_> = std::fs::read_dir(s.p(""))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        root.iter()
            .all(|n| !n.to_string_lossy().starts_with(".wh.")),
        "{root:?}"
    );
}

/// Hard-linked symlinks and fifos are lower hard links like regular files: removing one
/// name of a pushed-down pair leaves the other with nlink 1, and linking one again counts
/// every name (overlayfs indexes every non-directory kind).
#[test]
fn hard_linked_symlink_and_fifo_across_levels() {
    let mut p = Fixture::new()
        .lower(Layer::new().file("f", "x\n").file("d/keep", "k\n"))
        .pair();
    p.both("symlink s, mkfifo q, link each", |m| {
        std::os::unix::fs::symlink("../f", m.p("s")).unwrap();
        std::fs::hard_link(m.p("s"), m.p("d/s2")).unwrap();
        nix::unistd::mkfifo(&m.p("q"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        std::fs::hard_link(m.p("q"), m.p("d/q2")).is_ok()
    });
    rotate(&mut p, "hard-linked symlink and fifo");
    p.both("rm d/s2; ln q q3", |m| {
        std::fs::remove_file(m.p("d/s2")).unwrap();
        std::fs::hard_link(m.p("q"), m.p("q3")).is_ok()
    });
    p.both("nlink of s, q, q3, d/q2", |m| {
        ["s", "q", "q3", "d/q2"].map(|n| nlink(m, n))
    });
    assert_eq!(nlink(&p.s, "s"), 1);
    assert_eq!(nlink(&p.s, "q"), 3);
    // overlayfs's index stays in its workdir, so its pushed-down q loses the count (see
    // lower_hard_link_index_moves_with_the_upper): check strata against what is right.
    p.same_tree("after dropping and adding names");
    rotate_one(&mut p.s);
    let got = ["s", "q", "q3", "d/q2"].map(|n| nlink(&p.s, n));
    assert_eq!(got, [1, 3, 3, 3], "{}", p.s.log());
    let ino = |n: &str| std::fs::symlink_metadata(p.s.p(n)).unwrap().ino();
    assert_eq!(ino("q"), ino("d/q2"));
    assert_eq!(ino("q"), ino("q3"));
}

/// A lower hard-link group that gained a name at one level (copied up through the index)
/// and lost that name at the next: the names left, in the old upper and in the bottom
/// layer, still open and read the group's bytes.
#[test]
fn lower_hard_link_group_after_its_new_name_goes() {
    // The new name lands on a whiteout of the top lower, over a file of the bottom one.
    let mut p = Fixture::new()
        .lower(Layer::new().whiteout("b", Wh::File))
        .lower(
            Layer::new()
                .file("f", big(2 << 20))
                .hardlink("c/b", "f")
                .file("b", "b bottom\n"),
        )
        .pair();
    p.both("ln c/b b", |m| m.link("c/b", "b"));
    p.same_tree("a third name");
    // overlayfs's index stays in its workdir (see lower_hard_link_index_moves_with_the_upper):
    // from here on strata is checked against what is right.
    let s = &mut p.s;
    rotate_one(s);
    // Every name looked up before one of them goes, c/b last (it leads the node's names).
    let _ = s.tree();
    for n in ["b", "f", "c/b"] {
        std::fs::symlink_metadata(s.p(n)).unwrap();
    }
    std::fs::remove_file(s.p("b")).unwrap();
    std::fs::create_dir(s.p("b")).unwrap();
    // A listing looks f up again: it now leads to the new upper's index copy.
    let _ = std::fs::read_dir(s.p("")).unwrap().count();
    let _ = s.tree();
    for n in ["f", "c/b"] {
        let got = std::fs::read(s.p(n)).map_err(|e| format!("{n}: {e}\n{}", s.log()));
        assert!(
            got.as_ref().is_ok_and(|b| *b == big(2 << 20)),
            "{n}: {:?}",
            got.as_ref().map(|b| b.len())
        );
        assert_eq!(nlink(s, n), 2);
    }
    let ino = |n: &str| std::fs::symlink_metadata(s.p(n)).unwrap().ino();
    assert_eq!(ino("f"), ino("c/b"));
    rotate_one(s);
    assert!(read(s, "f") == big(2 << 20));
    assert_eq!(nlink(s, "c/b"), 2);
}
