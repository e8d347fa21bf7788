//! Open directories and file handles (issue 13, item 5), differential against kernel
//! overlayfs: fstat on an open directory that was removed or replaced by a rename, what
//! reading it gives, and name_to_handle_at / open_by_handle_at across a dentry cache drop.

use strata_tests::sys::{self, R};
use strata_tests::{Errno, Fixture, Layer, Mounted, Pair};

fn pair() -> Pair {
    Fixture::new()
        .lower(
            Layer::new()
                .dir("lempty")
                .dir("lempty2")
                .file("lfull/x", "x\n")
                .file("f", "lower f\n")
                .file("hl1", "hard\n")
                .hardlink("hl2", "hl1")
                .file("d/inner", "inner\n"),
        )
        .pair()
}

/// What an open directory fd shows after `remove` took its name: fstat (same inode as
/// before, mode, nlink) and one getdents call.
type Seen = (R<(bool, u32, u64)>, R<usize>);

/// How a case takes a directory's name away.
type Remove = dyn Fn(&Mounted);

fn open_then_remove(m: &Mounted, dir: &str, remove: impl Fn(&Mounted)) -> Seen {
    let fd = sys::open(&m.p(dir), libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
    let before = sys::fstat(&fd).unwrap();
    remove(m);
    let st = sys::fstat(&fd).map(|st| (st.st_ino == before.st_ino, st.st_mode, st.st_nlink));
    (st, sys::getdents(&fd))
}

/// Without the link count: overlayfs reports nlink 1 for every directory with a lower
/// part (its convention for merged directories, removed or not); strata reports 0 for a
/// removed one, as ext4 does and as overlayfs does for an upper-only directory.
fn no_nlink(s: Seen) -> (R<(bool, u32)>, R<usize>) {
    (s.0.map(|(same, mode, _)| (same, mode)), s.1)
}

#[test]
fn fstat_on_an_open_directory_replaced_or_removed() {
    let p = pair();
    // An upper directory replaced by rename(other_dir, dir).
    let s = p.both_val("open upper dir replaced by a rename", |m| {
        m.mkdir("a", 0o750).unwrap();
        m.mkdir("b", 0o755).unwrap();
        open_then_remove(m, "a", |m| m.rename("b", "a").unwrap())
    });
    assert_eq!(s.0, Ok((true, libc::S_IFDIR | 0o750, 0)), "strata: {s:?}");
    assert_eq!(s.1, Err(Errno::ENOENT));
    // An upper directory removed by rmdir.
    let s = p.both_val("open upper dir removed", |m| {
        m.mkdir("c", 0o700).unwrap();
        open_then_remove(m, "c", |m| m.rmdir("c").unwrap())
    });
    assert_eq!(s.0, Ok((true, libc::S_IFDIR | 0o700, 0)), "strata: {s:?}");
    // Lower directories: replaced, removed empty, removed after emptying it.
    let cases: [(&str, &Remove); 3] = [
        ("lempty", &|m: &Mounted| {
            m.mkdir("nb", 0o755).unwrap();
            m.rename("nb", "lempty").unwrap()
        }),
        ("lempty2", &|m: &Mounted| m.rmdir("lempty2").unwrap()),
        ("lfull", &|m: &Mounted| {
            m.unlink("lfull/x").unwrap();
            m.rmdir("lfull").unwrap()
        }),
    ];
    for (dir, remove) in cases {
        let o = no_nlink(open_then_remove(&p.o, dir, remove));
        let s = open_then_remove(&p.s, dir, remove);
        assert_eq!(
            no_nlink(s),
            o,
            "open lower dir {dir} removed: strata differs from overlayfs"
        );
        assert_eq!(s.0.map(|(_, _, n)| n), Ok(0), "{dir}: strata nlink");
    }
    // The names are free again, on both.
    p.both("listing after", |m| m.names(""));
}

/// name_to_handle_at, then open_by_handle_at once the dentry cache is gone.
fn handle_after_drop(m: &Mounted, path: &str) -> R<()> {
    let h = sys::name_to_handle_at(&m.p(path), 0)?;
    sys::drop_caches();
    let mfd = sys::open(&m.mnt, libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
    sys::open_by_handle_at(&mfd, &h, libc::O_RDONLY).map(drop)
}

#[test]
fn file_handles_are_refused_not_stale() {
    let p = pair();
    p.both("write f (copy-up)", |m| m.append("f", "more\n"));
    p.both("create new", |m| m.put("new", "new\n"));
    p.both("link hl3", |m| m.link("hl1", "hl3"));
    // overlayfs without nfs_export (metacopy=on rules it out) refuses handles with
    // EOPNOTSUPP; strata did hand them out, and they went stale (ESTALE) at the drop.
    for path in ["f", "new", "hl1", "hl2", "hl3", "d", "d/inner", ""] {
        let r = p.both_val(&format!("handle of /{path} across drop_caches"), |m| {
            handle_after_drop(m, path)
        });
        assert_eq!(r, Err(Errno::EOPNOTSUPP), "/{path}");
    }
    // Handles for identifying inodes only (fanotify, AT_HANDLE_FID) still work, and hard
    // links share one.
    p.both("FID handles of hard links", |m| {
        let fid = |p: &str| sys::name_to_handle_at(&m.p(p), sys::AT_HANDLE_FID).map(|h| h.1);
        let (a, b, c) = (fid("hl1"), fid("hl2"), fid("f"));
        (a.is_ok(), a == b, a == c)
    });
}

/// An inode the kernel still holds after its last name went (here through an O_PATH fd,
/// which the daemon never sees opened), then many new entries: the upper filesystem must
/// not hand the freed inode number to one of them. Before strata kept such inodes open,
/// ext4 reused the number at once, the kernel marked its old inode bad, and fstat gave EIO
/// (as did a racing `ls -lR` opening a directory being removed).
#[test]
fn removed_inodes_the_kernel_holds_keep_their_numbers() {
    let p = pair();
    let s = p.both_val(
        "O_PATH fds on removed upper entries, then new entries",
        |m| {
            m.mkdir("gone", 0o710).unwrap();
            m.put("gonefile", "x\n").unwrap();
            m.mkdir("old", 0o755).unwrap();
            m.mkdir("repl", 0o711).unwrap();
            let held: Vec<_> = ["gone", "gonefile", "repl"]
                .iter()
                .map(|n| sys::open(&m.p(n), libc::O_PATH | libc::O_NOFOLLOW, 0).unwrap())
                .collect();
            m.rmdir("gone").unwrap();
            m.unlink("gonefile").unwrap();
            m.rename("old", "repl").unwrap();
            for i in 0..64 {
                m.mkdir(&format!("new{i}"), 0o755).unwrap();
                m.put(&format!("newf{i}"), "n\n").unwrap();
            }
            held.iter()
                .map(|fd| sys::fstat(fd).map(|st| st.st_mode & libc::S_IFMT))
                .collect::<Vec<_>>()
        },
    );
    assert_eq!(
        s,
        vec![Ok(libc::S_IFDIR), Ok(libc::S_IFREG), Ok(libc::S_IFDIR)]
    );
}
