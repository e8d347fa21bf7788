//! A strata upper pushed down as the top lower (`lowerdir=UPPER:LOWERS`, a fresh upper)
//! keeps its meaning at any depth: metadata-only copies, hard links, redirects and block
//! deltas written at one level read right at every level below. Each case rotates strata
//! and kernel overlayfs (`redirect_dir=on,index=on,metacopy=on`) the same way and compares
//! the merged trees after every rotation; strata's st_ino must not change across one.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use strata_tests::{Fixture, Layer, Mounted, Pair};

/// Unmount, push the upper down as the top lower, mount again with a fresh upper.
fn rotate_one(m: &mut Mounted) {
    m.unmount();
    push_down(m);
}

/// Push the (unmounted) upper down as the top lower and mount with a fresh upper.
fn push_down(m: &mut Mounted) {
    let upper = m.upper.take().expect("a writable mount");
    m.lowers.insert(0, upper);
    let n = m.lowers.len();
    let (u, w) = (m.dir.join(&format!("u{n}")), m.dir.join(&format!("w{n}")));
    std::fs::create_dir_all(&u).expect("mkdir upper");
    std::fs::create_dir_all(&w).expect("mkdir work");
    m.upper = Some(u);
    m.work = Some(w);
    // Recomputed from the branches (and, for overlayfs, the richest option set).
    m.options = String::new();
    m.mount();
}

/// st_ino of every path of strata's merged tree.
fn inos(m: &Mounted) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for p in m.tree().entries.keys() {
        if let Ok(md) = std::fs::symlink_metadata(m.p(p)) {
            out.insert(p.clone(), md.ino());
        }
    }
    out
}

/// Rotate both; the trees must agree, and strata's inode numbers must be the same as
/// before the rotation.
#[track_caller]
fn rotate(p: &mut Pair, what: &str) {
    p.same_tree(&format!("{what}: before the rotation"));
    let before = inos(&p.s);
    rotate_one(&mut p.o);
    rotate_one(&mut p.s);
    p.same_tree(&format!("{what}: after the rotation"));
    let after = inos(&p.s);
    for (path, ino) in &before {
        if let Some(now) = after.get(path) {
            assert_eq!(
                ino,
                now,
                "{what}: st_ino of /{path} changed across the rotation\n{}",
                p.s.log()
            );
        }
    }
}

fn write_at(m: &Mounted, rel: &str, off: u64, data: &[u8]) {
    let f = OpenOptions::new()
        .write(true)
        .open(m.p(rel))
        .unwrap_or_else(|e| panic!("{}: open /{rel}: {e}", m.label()));
    f.write_all_at(data, off)
        .unwrap_or_else(|e| panic!("{}: write /{rel}: {e}", m.label()));
}

fn read(m: &Mounted, rel: &str) -> Vec<u8> {
    std::fs::read(m.p(rel)).unwrap_or_else(|e| panic!("{}: read /{rel}: {e}", m.label()))
}

/// A big lower file (over the default 1 MiB delta threshold), every byte distinct enough.
fn big(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// The first reproducer: a renamed lower file is a metadata-only copy whose
/// record must keep naming the lower file once its layer is pushed down.
#[test]
fn renamed_file_reads_after_rotation() {
    let mut p = Fixture::new()
        .lower(Layer::new().file("foo", ":xxx:yyy:zzz"))
        .pair();
    p.both("mv foo bar", |m| {
        std::fs::rename(m.p("foo"), m.p("bar")).is_ok()
    });
    rotate(&mut p, "renamed file");
    p.both("read bar", |m| read(m, "bar"));
    assert_eq!(read(&p.s, "bar"), b":xxx:yyy:zzz");
    // A metadata-only copy reports the blocks of the file holding its bytes (du).
    p.both("st_blocks of bar", |m| {
        std::fs::metadata(m.p("bar")).unwrap().blocks()
    });
    p.both("chmod bar", |m| {
        std::fs::set_permissions(
            m.p("bar"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .is_ok()
    });
    rotate(&mut p, "chmod of the renamed file");
    p.both("read bar", |m| read(m, "bar"));
}

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

/// A renamed lower directory (a redirect in the old upper), renamed again two levels
/// higher: each layer is looked up at its own path.
#[test]
fn redirect_moved_twice_across_levels() {
    let mut p = Fixture::new()
        .lower(
            Layer::new()
                .file("dir/x", "x\n")
                .file("dir/sub/y", "y\n")
                .file("dir/gone", "gone\n"),
        )
        .pair();
    p.both("mv dir dir2", |m| {
        std::fs::rename(m.p("dir"), m.p("dir2")).is_ok()
    });
    p.both("add dir2/new1", |m| {
        std::fs::write(m.p("dir2/new1"), "n1\n").is_ok()
    });
    rotate(&mut p, "renamed dir");
    p.both("read dir2/x", |m| read(m, "dir2/x"));
    p.both("rm dir2/gone", |m| {
        std::fs::remove_file(m.p("dir2/gone")).is_ok()
    });
    rotate(&mut p, "whiteout in the renamed dir");
    p.both("mv dir2 top/dir3", |m| {
        std::fs::create_dir(m.p("top")).unwrap();
        std::fs::rename(m.p("dir2"), m.p("top/dir3")).is_ok()
    });
    p.both("add top/dir3/sub/new2", |m| {
        std::fs::write(m.p("top/dir3/sub/new2"), "n2\n").is_ok()
    });
    rotate(&mut p, "dir renamed at level 1 and at level 3");
    p.both("read top/dir3/sub/y", |m| read(m, "top/dir3/sub/y"));
    p.both("old names are gone", |m| {
        (m.p("dir").exists(), m.p("dir2").exists())
    });
    rotate(&mut p, "one more level");
}

/// The delta reproducer: 4 KiB written into a 2 MiB lower file.
#[test]
fn delta_reads_after_rotation() {
    let mut p = Fixture::new()
        .lower(Layer::new().file("img", big(2 << 20)))
        .pair();
    p.both("dd bs=4k seek=10", |m| {
        write_at(m, "img", 10 * 4096, &[0xAB; 4096]);
    });
    rotate(&mut p, "delta");
    p.both("read img", |m| read(m, "img"));
}

/// A delta over a delta over a plain file: partial blocks at the second level are filled
/// from below through the chain, and every range reads from the topmost layer holding it.
#[test]
fn delta_over_delta_over_plain() {
    let mut p = Fixture::new()
        .lower(Layer::new().file("img", big(3 << 20)))
        .pair();
    p.both("level 1 writes", |m| {
        write_at(m, "img", 10 * 4096, &[1; 4096]);
        write_at(m, "img", 300 * 4096 + 7, &[2; 100]);
    });
    rotate(&mut p, "first delta");
    p.both("level 2 writes", |m| {
        write_at(m, "img", 10 * 4096 + 1000, &[3; 50]);
        write_at(m, "img", 20 * 4096, &[4; 8192]);
        write_at(m, "img", 300 * 4096 + 4000, &[5; 200]);
    });
    p.both("read at level 2", |m| read(m, "img"));
    rotate(&mut p, "delta over delta");
    p.both("read at level 3", |m| read(m, "img"));
    p.both("seek data and hole", |m| {
        let mut f = std::fs::File::open(m.p("img")).unwrap();
        let end = f.seek(SeekFrom::End(0)).unwrap();
        let data = nix::unistd::lseek(&f, 0, nix::unistd::Whence::SeekData).ok();
        (end, data)
    });
}

/// A delta truncated at the next level: bytes past the cut read as zeros once the file
/// grows again, through every level.
#[test]
fn truncated_delta_across_levels() {
    let mut p = Fixture::new()
        .lower(Layer::new().file("img", big(2 << 20)))
        .pair();
    p.both("level 1 write", |m| {
        write_at(m, "img", 400 * 4096, &[7; 4096]);
    });
    rotate(&mut p, "delta");
    p.both("truncate and grow", |m| {
        let f = OpenOptions::new().write(true).open(m.p("img")).unwrap();
        f.set_len((1 << 20) + 100).unwrap();
        f.set_len(2 << 20).unwrap();
        f.write_all_at(&[8; 10], 1 << 20).unwrap();
    });
    rotate(&mut p, "truncated delta");
    p.both("read", |m| read(m, "img"));
    p.both("truncate again", |m| {
        let f = OpenOptions::new().write(true).open(m.p("img")).unwrap();
        f.set_len(5000).unwrap();
    });
    rotate(&mut p, "delta truncated twice");
    p.both("read", |m| read(m, "img"));
}

/// Five rotations, each adding a delta level: whole blocks, partial blocks, one block
/// rewritten at every level.
#[test]
fn five_deep_rotation_of_deltas() {
    let mut p = Fixture::new()
        .lower(Layer::new().file("img", big(4 << 20)))
        .pair();
    for level in 1..=5u8 {
        p.both(&format!("level {level} writes"), |m| {
            let l = u64::from(level);
            write_at(m, "img", l * 37 * 4096, &[level; 4096]);
            write_at(m, "img", 5 * 4096 + l * 300, &[level + 100; 300]);
            write_at(m, "img", (900 + l) * 4096 - 10, &[level + 50; 20]);
        });
        p.both(&format!("read at level {level}"), |m| {
            let mut buf = Vec::new();
            std::fs::File::open(m.p("img"))
                .unwrap()
                .read_to_end(&mut buf)
                .unwrap();
            buf
        });
        rotate(&mut p, &format!("delta level {level}"));
    }
    p.both("read at the bottom of the stack", |m| read(m, "img"));
    // A copy-up of the whole file reads every layer of the chain.
    p.both("chmod then full rewrite of one byte", |m| {
        let f = OpenOptions::new().write(true).open(m.p("img")).unwrap();
        f.set_len(3 << 20).unwrap();
        f.write_all_at(b"z", 0).unwrap();
    });
    rotate(&mut p, "after the five-deep chain was written again");
}

/// Mode, size, content, st_ino and st_nlink of each name.
fn names_state(m: &Mounted, names: &[&str]) -> Vec<(u32, u64, Vec<u8>, u64, u64)> {
    names
        .iter()
        .map(|n| {
            let md = std::fs::metadata(m.p(n)).unwrap();
            (
                md.mode() & 0o7777,
                md.len(),
                read(m, n),
                md.ino(),
                md.nlink(),
            )
        })
        .collect()
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

/// `strata fsck UPPER --lowerdir A:B` of a pushed-down stack.
fn fsck(upper: &std::path::Path, lowers: &[std::path::PathBuf]) -> (bool, String) {
    let l: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let out = std::process::Command::new(strata_tests::strata_bin())
        .arg("fsck")
        .arg(upper)
        .arg("--lowerdir")
        .arg(l.join(":"))
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A delta over a pushed-down delta made whole by `strata compact` and by the background
/// worker (a dense write): the blocks still below are read through the chain. fsck checks
/// each record's chain down the stack and finds a changed origin two layers down.
#[test]
fn compaction_and_fsck_through_the_chain() {
    let mut p = Fixture::new()
        .lower(
            Layer::new()
                .file("a.img", big(2 << 20))
                .file("b.img", big(2 << 20))
                .file("c.img", big(2 << 20)),
        )
        .pair();
    p.both("level 1 writes", |m| {
        write_at(m, "a.img", 10 * 4096, &[1; 4096]);
        write_at(m, "b.img", 3 * 4096, &[2; 4096]);
        write_at(m, "c.img", 4096, &[6; 4096]);
    });
    rotate(&mut p, "two deltas");
    p.both("level 2 writes", |m| {
        write_at(m, "a.img", 20 * 4096 + 5, &[3; 10]);
        // Over compact_ratio (half the blocks): compacted in the background.
        write_at(m, "b.img", 100 * 4096, &vec![4; 1 << 20]);
        write_at(m, "c.img", 2 * 4096, &[7; 4096]);
    });
    let out = std::process::Command::new(strata_tests::strata_bin())
        .arg("compact")
        .arg(p.s.p("a.img"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "strata compact: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.both("read a.img after compact", |m| read(m, "a.img"));
    p.both("read b.img", |m| read(m, "b.img"));
    rotate(&mut p, "compacted over a delta");
    p.both("read a.img", |m| read(m, "a.img"));
    p.both("level 3 writes", |m| {
        write_at(m, "b.img", 7, b"seven");
        write_at(m, "c.img", 3 * 4096, b"eight");
    });
    p.both("read c.img", |m| read(m, "c.img"));
    p.s.unmount();
    let (upper, lowers) = (p.s.upper.clone().unwrap(), p.s.lowers.clone());
    let (ok, text) = fsck(&upper, &lowers);
    assert!(ok, "fsck of the stack:\n{text}");
    // The bottom file of a three-delta chain changes behind the stack: fsck names it.
    std::fs::OpenOptions::new()
        .append(true)
        .open(lowers[lowers.len() - 1].join("c.img"))
        .and_then(|mut f| f.write_all(b"x"))
        .unwrap();
    let (ok, text) = fsck(&upper, &lowers);
    assert!(
        !ok && text.contains("c.img"),
        "fsck misses a changed origin down the chain:\n{text}"
    );
}

/// An upper written before format 2 (`data L PATH`, L counted from its mount's top
/// lower) pushed down on top of the same lowers reads as `data +(L+1) PATH`: the same file.
#[test]
fn format_1_upper_pushed_down() {
    let blk = vec![9u8; 4096];
    let old_upper = Layer::new()
        .sparse("bar", 12, &[])
        .xattr(
            "bar",
            "trusted.strata.meta",
            "ino 123457\ndata 0 foo\nend\n",
        )
        .whiteout("foo", strata_tests::Wh::CharDev)
        .sparse("img", 2 << 20, &[(2 * 4096, &blk)])
        .xattr(
            "img",
            "trusted.strata.meta",
            format!("delta 1 4096 {}\nblocks 2-3\ndata 0 img\nend\n", 2 << 20),
        );
    let bottom = Layer::new()
        .file("foo", ":xxx:yyy:zzz")
        .file("img", big(2 << 20));
    let mut s = Fixture::new().lower(old_upper).lower(bottom).strata();
    let mut want_img = big(2 << 20);
    want_img[2 * 4096..3 * 4096].fill(9);
    let check = |s: &Mounted, want_img: &[u8]| {
        assert_eq!(read(s, "bar"), b":xxx:yyy:zzz", "{}", s.log());
        assert_eq!(std::fs::metadata(s.p("bar")).unwrap().ino(), 123457);
        assert!(!s.p("foo").exists());
        assert!(read(s, "img") == want_img, "img reads wrong\n{}", s.log());
    };
    check(&s, &want_img);
    write_at(&s, "img", 100, b"level 2");
    want_img[100..107].copy_from_slice(b"level 2");
    rotate_one(&mut s);
    check(&s, &want_img);
}

/// SEEK_DATA / SEEK_HOLE through a delta over a delta over a sparse file: data where any
/// layer holding the range has data, holes elsewhere (the bytes are compared with
/// overlayfs; its extent map depends on how its copy-up keeps holes, so strata's is
/// checked against the layers).
#[test]
fn seek_through_a_chain() {
    const MIB: u64 = 1 << 20;
    let mut p = Fixture::new()
        .lower(Layer::new().sparse("s.img", 4 * MIB, &[(0, b"head"), (2 * MIB, b"mid")]))
        .pair();
    p.both("level 1 write", |m| write_at(m, "s.img", MIB, &[1; 4096]));
    rotate(&mut p, "sparse delta");
    p.both("level 2 write", |m| {
        write_at(m, "s.img", 3 * MIB, &[2; 4096])
    });
    rotate(&mut p, "sparse delta over delta");
    p.both("read", |m| read(m, "s.img"));
    let f = std::fs::File::open(p.s.p("s.img")).unwrap();
    let seek = |off: u64, data: bool| {
        let w = if data {
            nix::unistd::Whence::SeekData
        } else {
            nix::unistd::Whence::SeekHole
        };
        nix::unistd::lseek(&f, off as i64, w).map(|o| o as u64)
    };
    assert_eq!(seek(0, true), Ok(0));
    assert_eq!(seek(0, false), Ok(4096));
    assert_eq!(seek(4096, true), Ok(MIB));
    assert_eq!(seek(MIB, false), Ok(MIB + 4096));
    assert_eq!(seek(MIB + 4096, true), Ok(2 * MIB));
    assert_eq!(seek(2 * MIB + 4096, true), Ok(3 * MIB));
    assert_eq!(seek(3 * MIB, false), Ok(3 * MIB + 4096));
    assert_eq!(seek(3 * MIB + 4096, true), Err(nix::errno::Errno::ENXIO));
    assert_eq!(seek(3 * MIB + 4096, false), Ok(3 * MIB + 4096));
}

/// The origin identity check holds down the stack: a bottom file changed under a pushed-down
/// delta is refused with EIO (not served mixed), and the log names it; other files read.
#[test]
fn changed_origin_under_a_pushed_down_delta_is_eio() {
    let mut s = Fixture::new()
        .lower(
            Layer::new()
                .file("img", big(2 << 20))
                .file("ok.txt", "fine\n"),
        )
        .strata();
    write_at(&s, "img", 4096, &[1; 4096]);
    rotate_one(&mut s);
    write_at(&s, "img", 3 * 4096, &[2; 4096]);
    rotate_one(&mut s);
    assert_eq!(read(&s, "img").len(), 2 << 20);
    s.unmount();
    let bottom = s.lowers.last().unwrap().join("img");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&bottom)
        .unwrap()
        .write_all_at(b"changed", 0)
        .unwrap();
    s.mount();
    let err = std::fs::read(s.p("img")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(read(&s, "ok.txt"), b"fine\n");
    let log =
        std::fs::read_to_string(s.work.as_ref().unwrap().join("strata.log")).unwrap_or_default();
    assert!(log.contains("changed underneath"), "{log}");
}

/// An upper written by a rootless daemon (records in `user.strata.meta`) pushed down under
/// a root mount (which writes `trusted.strata.meta`): the lower records are read in either
/// namespace.
#[test]
fn rootless_upper_pushed_down_under_root() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};
    use std::time::Duration;
    use strata_tests::mount::{is_mounted, pids_with_arg, reap_daemons, unmount_path, wait_until};
    const USER: &str = "strata-unpriv";
    strata_tests::users::ensure_user(USER);
    std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).unwrap();
    let dir = strata_tests::mount::TempDir::new("rootless-stack");
    let [l0, u1, w1, u2, w2, mnt] = ["l0", "u1", "w1", "u2", "w2", "mnt"].map(|d| dir.join(d));
    for d in [&l0, &u1, &w1, &u2, &w2, &mnt] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(l0.join("foo"), ":xxx:yyy:zzz").unwrap();
    std::fs::create_dir_all(l0.join("dir")).unwrap();
    std::fs::write(l0.join("dir/x"), "x\n").unwrap();
    let img = big(2 << 20);
    std::fs::write(l0.join("img"), &img).unwrap();
    let st = Command::new("chown")
        .args(["-R", &format!("{USER}:{USER}")])
        .arg(&dir.path)
        .status()
        .unwrap();
    assert!(st.success());
    let script = format!(
        "{bin} -o lowerdir={l0},upperdir={u1},workdir={w1} {mnt} && cd {mnt} && mv foo bar && \
         mv dir dir2 && printf zz | dd of=img bs=1 seek=5000 conv=notrunc status=none && \
         cd / && fusermount3 -u {mnt}",
        bin = strata_tests::strata_bin().display(),
        l0 = l0.display(),
        u1 = u1.display(),
        w1 = w1.display(),
        mnt = mnt.display()
    );
    let out = Command::new("setpriv")
        .args(["--reuid", USER, "--regid", USER, "--init-groups", "--"])
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rootless level: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_until(Duration::from_secs(10), || !is_mounted(&mnt)));
    let m = mnt.to_string_lossy().to_string();
    assert!(wait_until(Duration::from_secs(10), || pids_with_arg(&m).is_empty()));
    assert!(
        strata_tests::sys::lgetxattr(&u1.join("img"), "user.strata.meta").is_ok(),
        "the rootless level wrote no user.strata.meta delta record"
    );
    let opts = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        u1.display(),
        l0.display(),
        u2.display(),
        w2.display()
    );
    let (ok, text) = strata_tests::mount::run_strata(&["-o", &opts, &m], &dir.join("log"));
    assert!(ok, "root mount of the stack: {text}");
    let daemons = pids_with_arg(&m);
    let mut want = img.clone();
    want[5000..5002].copy_from_slice(b"zz");
    let got = (
        std::fs::read(mnt.join("bar")),
        std::fs::read(mnt.join("dir2/x")),
        std::fs::read(mnt.join("img")).map(|b| b == want),
    );
    unmount_path(&mnt).unwrap();
    reap_daemons(&daemons);
    assert_eq!(got.0.unwrap(), b":xxx:yyy:zzz");
    assert_eq!(got.1.unwrap(), b"x\n");
    assert!(got.2.unwrap(), "img reads wrong through the rootless delta");
}

/// Whiteouts and opaque directories written at one level hide the layers below them at
/// every later level, wherever the layer holding them sits.
#[test]
fn whiteouts_and_opaque_dirs_across_levels() {
    let mut p = Fixture::new()
        .lower(
            Layer::new()
                .file("d/old1", "1\n")
                .file("d/sub/old2", "2\n")
                .file("gone", "g\n")
                .file("keep/a", "a\n"),
        )
        .pair();
    p.both("rm -r d; mkdir d; d/new; rm gone", |m| {
        std::fs::remove_dir_all(m.p("d")).unwrap();
        std::fs::create_dir(m.p("d")).unwrap();
        std::fs::write(m.p("d/new"), "new\n").unwrap();
        std::fs::remove_file(m.p("gone")).is_ok()
    });
    rotate(&mut p, "opaque dir and whiteout");
    p.both("recreate gone, rm keep/a", |m| {
        std::fs::write(m.p("gone"), "back\n").unwrap();
        std::fs::remove_file(m.p("keep/a")).is_ok()
    });
    rotate(&mut p, "recreated over a pushed-down whiteout");
    p.both("rm -r d again, mkdir d/sub", |m| {
        std::fs::remove_dir_all(m.p("d")).unwrap();
        std::fs::create_dir_all(m.p("d/sub")).is_ok()
    });
    rotate(&mut p, "opaque over opaque");
    p.both("listing of d/sub", |m| {
        std::fs::read_dir(m.p("d/sub")).unwrap().count()
    });
}
