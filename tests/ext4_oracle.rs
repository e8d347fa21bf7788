//! What ext4 has and strata must not miss (issue 13, item 6), with a loop-mounted ext4 as
//! the oracle and strata's branches on that same ext4: inode flags (`chattr +i`, `+a`,
//! `lsattr`) with what they forbid, also for an unprivileged owner; poll on files; and the
//! two things the FUSE protocol does not carry (FIEMAP, O_TMPFILE), refused cleanly, and
//! what stands in for FIEMAP: SEEK_DATA / SEEK_HOLE over a delta's merged view.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use strata_tests::ext4::{Ext4, StrataOn};
use strata_tests::sys::{self, FS_APPEND_FL, FS_IMMUTABLE_FL, FS_NOATIME_FL};
use strata_tests::Errno;

const MASK: u32 = FS_APPEND_FL | FS_IMMUTABLE_FL | FS_NOATIME_FL;
const BIG: usize = 2 << 20;

/// The same files in the oracle directory and in strata's lower branch.
fn plant(d: &Path) {
    std::fs::write(d.join("lf"), "lower\n").unwrap();
    std::fs::write(d.join("big"), vec![b'b'; BIG]).unwrap();
    std::fs::create_dir_all(d.join("ldir")).unwrap();
    std::fs::write(d.join("ldir/x"), "x\n").unwrap();
    std::fs::write(d.join("owned"), "owned\n").unwrap();
    // 8 MiB, data at 0 and at 4 MiB only.
    let f = std::fs::File::create(d.join("sparse")).unwrap();
    f.set_len(8 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"head", 0).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[b'm'; 8192], 4 << 20).unwrap();
    std::os::unix::fs::chown(d.join("owned"), Some(1000), Some(1000)).unwrap();
}

fn flags(p: &Path) -> Result<u32, Errno> {
    sys::get_flags(p).map(|f| f & MASK)
}

fn add(p: &Path, f: u32) -> Result<(), Errno> {
    sys::set_flags(p, sys::get_flags(p)? | f)
}

fn clear(p: &Path, f: u32) -> Result<(), Errno> {
    sys::set_flags(p, sys::get_flags(p)? & !f)
}

fn open_w(p: &Path, extra: i32) -> Result<(), Errno> {
    sys::open(p, libc::O_WRONLY | extra, 0).map(drop)
}

fn append(p: &Path, data: &[u8]) -> Result<usize, Errno> {
    let fd = sys::open(p, libc::O_WRONLY | libc::O_APPEND, 0)?;
    sys::write_all(&fd, data)
}

fn read(p: &Path) -> Result<u64, Errno> {
    let fd = sys::open(p, libc::O_RDONLY, 0)?;
    sys::read_all(&fd).map(|v| strata_tests::fnv1a(&v))
}

/// Every outcome of the flag sequence on file `name` in `root`, one line each.
fn file_sequence(root: &Path, name: &str) -> Vec<String> {
    let p = root.join(name);
    let other = root.join(format!("{name}.other"));
    let mut out = Vec::new();
    let mut log = |what: &str, r: String| out.push(format!("{name} {what}: {r}"));
    log("flags", format!("{:?}", flags(&p)));
    log("+i", format!("{:?}", add(&p, FS_IMMUTABLE_FL)));
    log("flags", format!("{:?}", flags(&p)));
    log("open w", format!("{:?}", open_w(&p, 0)));
    log("open a", format!("{:?}", open_w(&p, libc::O_APPEND)));
    log("truncate", format!("{:?}", sys::truncate(&p, 0)));
    log("chmod", format!("{:?}", sys::chmod(&p, 0o600)));
    log("rename", format!("{:?}", sys::rename2(&p, &other, 0)));
    log("link", format!("{:?}", sys::link(&p, &other)));
    log("unlink", format!("{:?}", sys::unlink(&p)));
    log("read", format!("{:?}", read(&p)));
    log("-i", format!("{:?}", clear(&p, FS_IMMUTABLE_FL)));
    log("+a", format!("{:?}", add(&p, FS_APPEND_FL)));
    log("flags", format!("{:?}", flags(&p)));
    log("open w", format!("{:?}", open_w(&p, 0)));
    log(
        "open a|trunc",
        format!("{:?}", open_w(&p, libc::O_APPEND | libc::O_TRUNC)),
    );
    log("append", format!("{:?}", append(&p, b"+1\n")));
    log("append", format!("{:?}", append(&p, b"+2\n")));
    log("truncate", format!("{:?}", sys::truncate(&p, 1)));
    log("unlink", format!("{:?}", sys::unlink(&p)));
    log("read", format!("{:?}", read(&p)));
    log("-a", format!("{:?}", clear(&p, FS_APPEND_FL)));
    log("+A", format!("{:?}", add(&p, FS_NOATIME_FL)));
    log("flags", format!("{:?}", flags(&p)));
    log("unlink", format!("{:?}", sys::unlink(&p)));
    out
}

/// The flag sequence on directory `ldir` in `root`.
fn dir_sequence(root: &Path) -> Vec<String> {
    let d = root.join("ldir");
    vec![
        format!("+i {:?}", add(&d, FS_IMMUTABLE_FL)),
        format!("flags {:?}", flags(&d)),
        format!(
            "create {:?}",
            std::fs::write(d.join("new"), "n").map_err(|e| e.raw_os_error())
        ),
        format!("unlink {:?}", sys::unlink(&d.join("x"))),
        format!("read {:?}", read(&d.join("x"))),
        format!("-i {:?}", clear(&d, FS_IMMUTABLE_FL)),
        format!(
            "create {:?}",
            std::fs::write(d.join("new"), "n").map_err(|e| e.raw_os_error())
        ),
    ]
}

/// `chattr ARG FILE` run as uid/gid 1000: its exit status.
fn chattr_as_user(arg: &str, p: &Path) -> Option<i32> {
    Command::new("chattr")
        .arg(arg)
        .arg(p)
        .uid(1000)
        .gid(1000)
        .output()
        .unwrap()
        .status
        .code()
}

/// Everything the test does on one tree (the oracle or a strata mount).
fn everything(root: &Path) -> Vec<String> {
    // A delta: a block written into the middle of a big lower file first.
    let fd = sys::open(&root.join("big"), libc::O_WRONLY, 0).unwrap();
    sys::pwrite_all(&fd, b"delta", 1 << 20).unwrap();
    drop(fd);
    std::fs::write(root.join("uf"), "upper\n").unwrap();
    let mut out = Vec::new();
    for f in ["lf", "uf", "big"] {
        out.extend(file_sequence(root, f));
    }
    out.extend(dir_sequence(root));
    // The owner, unprivileged: +i and +a need CAP_LINUX_IMMUTABLE, +A does not; lsattr is
    // for anyone.
    let owned = root.join("owned");
    for arg in ["+i", "+a", "+A", "-A"] {
        out.push(format!(
            "user chattr {arg}: {:?}",
            chattr_as_user(arg, &owned)
        ));
    }
    out.push(format!(
        "user chattr +A on root's: {:?}",
        chattr_as_user("+A", &root.join("lf"))
    ));
    out
}

#[test]
fn chattr_flags_like_ext4() {
    let ext4 = Ext4::new();
    let oracle = ext4.mkdir("oracle");
    plant(&oracle);
    let want = everything(&oracle);
    // Root's strata uses passthrough; passthrough=0 is the writeback cache of the
    // unprivileged case.
    for (name, extra) in [("pt", ""), ("wb", "passthrough=0")] {
        let s = StrataOn::new(&ext4, name, extra, plant);
        let got = everything(&s.mnt);
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(g, w, "strata ({name}) differs from ext4");
        }
        assert_eq!(got.len(), want.len());
        // Nothing half done: the upper holds what the mount shows, and no flag is left.
        assert_eq!(
            sys::get_flags(&s.upper.join("ldir")).map(|f| f & MASK),
            Ok(0)
        );
        s.unmount();
    }
}

#[test]
fn poll_on_files_like_ext4() {
    let ext4 = Ext4::new();
    let oracle = ext4.mkdir("oracle");
    plant(&oracle);
    let trace = ext4.root.join("trace.jsonl");
    let s = StrataOn::new(&ext4, "s", &format!("trace={}", trace.display()), plant);
    let events = [
        libc::POLLIN,
        libc::POLLOUT,
        libc::POLLIN | libc::POLLOUT | libc::POLLPRI,
    ];
    let probe = |root: &Path| -> Vec<Result<i16, Errno>> {
        let mut v = Vec::new();
        for (f, flags) in [
            ("lf", libc::O_RDONLY),
            ("lf", libc::O_RDWR),
            ("uf", libc::O_WRONLY),
        ] {
            if !root.join("uf").exists() {
                std::fs::write(root.join("uf"), "u").unwrap();
            }
            let fd = sys::open(&root.join(f), flags, 0).unwrap();
            for e in events {
                v.push(sys::poll_now(&fd, e));
            }
        }
        v
    };
    assert_eq!(probe(&s.mnt), probe(&oracle));
    s.unmount();
    // strata answered the requests itself (fuser's default answered ENOSYS, and the kernel
    // then stopped asking).
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let polls: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"op\":\"poll\""))
        .collect();
    assert!(!polls.is_empty(), "no poll request in the trace:\n{text}");
    assert!(polls.iter().all(|l| l.contains("\"errno\":0")), "{polls:?}");
}

#[test]
fn fiemap_and_tmpfile_refused_cleanly() {
    let ext4 = Ext4::new();
    let oracle = ext4.mkdir("oracle");
    plant(&oracle);
    let s = StrataOn::new(&ext4, "s", "", plant);
    // ext4 maps extents; the kernel answers FS_IOC_FIEMAP itself for a FUSE inode (FUSE
    // has no fiemap request), with EOPNOTSUPP, before any ioctl reaches strata.
    let fiemap = |root: &Path| sys::fiemap_extents(&sys::open(&root.join("big"), 0, 0).unwrap());
    assert!(fiemap(&oracle).is_ok_and(|n| n > 0));
    assert_eq!(fiemap(&s.mnt), Err(Errno::EOPNOTSUPP));
    // O_TMPFILE: ext4 makes one; fuser 0.18 cannot parse FUSE_TMPFILE, so the kernel is
    // told ENOSYS and answers EOPNOTSUPP (now and later), leaving nothing behind.
    let tmp = |root: &Path| sys::open(root, libc::O_TMPFILE | libc::O_RDWR, 0o600).map(drop);
    assert_eq!(tmp(&oracle), Ok(()));
    for _ in 0..2 {
        assert_eq!(tmp(&s.mnt), Err(Errno::EOPNOTSUPP));
    }
    let mut names: Vec<_> = std::fs::read_dir(&s.upper)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(names.is_empty(), "upper after O_TMPFILE: {names:?}");
    // The mount goes on working.
    std::fs::write(s.mnt.join("after"), "ok").unwrap();
    assert_eq!(std::fs::read_to_string(s.mnt.join("after")).unwrap(), "ok");
}

/// The (data start, hole start) list of `fd`, by SEEK_DATA / SEEK_HOLE from 0.
fn extents(fd: &std::os::fd::OwnedFd) -> Vec<(i64, i64)> {
    let size = sys::fstat(fd).unwrap().st_size;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < size && out.len() < 64 {
        let Ok(d) = sys::lseek(fd, pos, libc::SEEK_DATA) else {
            break;
        };
        let h = sys::lseek(fd, d, libc::SEEK_HOLE).unwrap();
        out.push((d, h));
        pos = h;
    }
    out
}

#[test]
fn seek_data_hole_on_a_delta_like_ext4() {
    let ext4 = Ext4::new();
    let oracle = ext4.mkdir("oracle");
    plant(&oracle);
    let s = StrataOn::new(&ext4, "s", "", plant);
    let steps = |root: &Path| -> Vec<Vec<(i64, i64)>> {
        let p = root.join("sparse");
        let ro = || sys::open(&p, libc::O_RDONLY, 0).unwrap();
        let mut v = vec![extents(&ro())];
        // Blocks written into holes and over lower data (the file becomes a delta).
        let w = sys::open(&p, libc::O_RDWR, 0).unwrap();
        sys::pwrite_all(&w, b"x", 1 << 20).unwrap();
        sys::pwrite_all(&w, &[b'y'; 4096], (4 << 20) + 4096).unwrap();
        sys::pwrite_all(&w, b"z", (6 << 20) + 100).unwrap();
        // While a writer is open strata may only say "all data" (its mmap pages may be
        // dirty in the kernel): a valid answer, so only its consistency is checked.
        let d = sys::lseek(&w, 0, libc::SEEK_DATA).unwrap();
        let h = sys::lseek(&w, d, libc::SEEK_HOLE).unwrap();
        assert!(d == 0 && h >= 4096, "with a writer: data {d}, hole {h}");
        drop(w);
        v.push(extents(&ro()));
        // A hole past the old end, then a cut below the lower data and a regrowth.
        sys::truncate(&p, 12 << 20).unwrap();
        v.push(extents(&ro()));
        sys::truncate(&p, (4 << 20) + 4096).unwrap();
        sys::truncate(&p, 8 << 20).unwrap();
        let fd = ro();
        v.push(extents(&fd));
        v.push(vec![(
            sys::lseek(&fd, 8 << 20, libc::SEEK_DATA).map_or(-1, |_| 0),
            sys::lseek(&fd, (8 << 20) - 1, libc::SEEK_HOLE).unwrap(),
        )]);
        v
    };
    let want = steps(&oracle);
    let got = steps(&s.mnt);
    assert_eq!(
        got, want,
        "SEEK_DATA/SEEK_HOLE: strata (left) differs from ext4"
    );
    // It was a delta all along: the upper holds a few blocks, not the file.
    let up = sys::lstat(&s.upper.join("sparse")).unwrap();
    assert!(
        up.st_blocks * 512 < (1 << 20),
        "upper holds {} blocks",
        up.st_blocks
    );
}

#[test]
fn seek_data_never_skips_cached_writes() {
    // Under the writeback cache (strata unprivileged, here passthrough=0) written bytes may
    // still be in the kernel's page cache when SEEK_DATA comes: they must not be reported
    // as a hole (before: ENXIO, and `cp --sparse` dropped them).
    let ext4 = Ext4::new();
    let s = StrataOn::new(&ext4, "wb", "passthrough=0", plant);
    for name in ["new", "sparse"] {
        let p = s.mnt.join(name);
        let fd = sys::open(&p, libc::O_RDWR | libc::O_CREAT, 0o644).unwrap();
        sys::ftruncate(&fd, 8 << 20).unwrap();
        sys::pwrite_all(&fd, b"cached", 5 << 20).unwrap();
        let d = sys::lseek(&fd, 2 << 20, libc::SEEK_DATA);
        assert!(
            matches!(d, Ok(o) if o <= 5 << 20),
            "{name}: SEEK_DATA gave {d:?}"
        );
        let h = sys::lseek(&fd, 5 << 20, libc::SEEK_HOLE);
        assert!(
            matches!(h, Ok(o) if o > (5 << 20) + 5),
            "{name}: SEEK_HOLE gave {h:?}"
        );
        assert_eq!(sys::pread(&fd, 6, 5 << 20), Ok(b"cached".to_vec()));
    }
}
