//! POSIX edges, each compared with kernel overlayfs (or ext4 where overlayfs departs from
//! POSIX): paths past PATH_MAX, modes under every umask, a real 0/0 character device,
//! and the ctime of `chown(path, -1, -1)`.

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::UnlinkatFlags;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Mutex;
use strata_tests::sys::{self, R};
use strata_tests::{Errno, Fixture, Layer, Meta, Mounted, Pair, TempDir};

/// The umask is per process: tests of this file that depend on it (or create files
/// while another changes it) run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A 127-byte component: 32 of them with their slashes make a 4095-byte path.
fn comp(c: char) -> String {
    std::iter::repeat_n(c, 127).collect()
}

/// `n` components of 127 bytes: a relative path of 128 * n - 1 bytes.
fn chain(c: char, n: usize) -> String {
    vec![comp(c); n].join("/")
}

/// An open directory for operations relative to it (*at calls, each path < PATH_MAX).
struct At(OwnedFd);

impl At {
    fn open(p: &Path) -> At {
        At(sys::open(p, libc::O_PATH | libc::O_DIRECTORY, 0).unwrap())
    }

    /// mkdir every level of `rel` one at a time (no single path past PATH_MAX), then
    /// open the last.
    fn mkdirs(&self, rel: &str) -> At {
        let mut fd = self.0.try_clone().unwrap();
        for c in rel.split('/') {
            match nix::sys::stat::mkdirat(&fd, c, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => panic!("mkdir {c}: {e}"),
            }
            fd = nix::fcntl::openat(&fd, c, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())
                .unwrap();
        }
        At(fd)
    }

    fn sub(&self, rel: &str) -> At {
        At(nix::fcntl::openat(
            &self.0,
            rel,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap())
    }

    fn stat(&self, p: &str) -> R<Meta> {
        nix::sys::stat::fstatat(&self.0, p, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map(|st| Meta::from_stat(&st))
    }

    fn mtime(&self, p: &str) -> R<(i64, i64)> {
        nix::sys::stat::fstatat(&self.0, p, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map(|st| (st.st_mtime, st.st_mtime_nsec))
    }

    fn open_file(&self, p: &str, flags: OFlag, mode: u32) -> R<OwnedFd> {
        nix::fcntl::openat(
            &self.0,
            p,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
    }

    fn create(&self, p: &str, data: &[u8]) -> R<()> {
        let fd = self.open_file(p, OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY, 0o644)?;
        sys::pwrite_all(&fd, data, 0).map(drop)
    }

    fn read(&self, p: &str) -> R<Vec<u8>> {
        sys::read_all(&self.open_file(p, OFlag::O_RDONLY, 0)?)
    }

    fn write_at(&self, p: &str, off: u64, data: &[u8]) -> R<usize> {
        sys::pwrite_all(&self.open_file(p, OFlag::O_WRONLY, 0)?, data, off)
    }

    fn chmod(&self, p: &str, mode: u32) -> R<()> {
        nix::sys::stat::fchmodat(
            &self.0,
            p,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
    }

    fn chown(&self, p: &str, uid: Option<u32>, gid: Option<u32>) -> R<()> {
        nix::unistd::fchownat(
            &self.0,
            p,
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
    }

    fn truncate(&self, p: &str, len: u64) -> R<()> {
        sys::ftruncate(&self.open_file(p, OFlag::O_WRONLY, 0)?, len)
    }

    fn utimes(&self, p: &str, sec: i64) -> R<()> {
        let t = TimeSpec::new(sec, 0);
        nix::sys::stat::utimensat(&self.0, p, &t, &t, UtimensatFlags::NoFollowSymlink)
    }

    /// setxattr and getxattr through an fd of the file (the /proc/self/fd path is short).
    fn xattr(&self, p: &str, value: &[u8]) -> R<Vec<u8>> {
        let fd = self.open_file(p, OFlag::O_RDONLY, 0)?;
        let path = std::path::PathBuf::from(format!("/proc/self/fd/{}", {
            use std::os::fd::AsRawFd;
            fd.as_raw_fd()
        }));
        sys::lsetxattr(&path, "user.deep", value, 0)?;
        sys::lgetxattr(&path, "user.deep")
    }

    fn link(&self, a: &str, b: &str) -> R<()> {
        nix::unistd::linkat(&self.0, a, &self.0, b, AtFlags::empty())
    }

    fn rename(&self, a: &str, b: &str) -> R<()> {
        nix::fcntl::renameat(&self.0, a, &self.0, b)
    }

    fn mknod(&self, p: &str, kind: SFlag, mode: u32, dev: u64) -> R<()> {
        nix::sys::stat::mknodat(&self.0, p, kind, Mode::from_bits_truncate(mode), dev)
    }

    fn symlink(&self, target: &str, p: &str) -> R<()> {
        nix::unistd::symlinkat(target, &self.0, p)
    }

    fn readlink(&self, p: &str) -> R<String> {
        nix::fcntl::readlinkat(&self.0, p).map(|s| s.to_string_lossy().into_owned())
    }

    fn mkdir(&self, p: &str) -> R<()> {
        nix::sys::stat::mkdirat(&self.0, p, Mode::from_bits_truncate(0o750))
    }

    fn unlink(&self, p: &str) -> R<()> {
        nix::unistd::unlinkat(&self.0, p, UnlinkatFlags::NoRemoveDir)
    }

    fn rmdir(&self, p: &str) -> R<()> {
        nix::unistd::unlinkat(&self.0, p, UnlinkatFlags::RemoveDir)
    }

    fn names(&self, p: &str) -> R<Vec<String>> {
        let fd = nix::fcntl::openat(
            &self.0,
            p,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut d = nix::dir::Dir::from_fd(fd)?;
        let mut v: Vec<String> = d
            .iter()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "." && n != "..")
            .collect();
        v.sort();
        Ok(v)
    }
}

/// Every operation on 4095-byte paths relative to a directory that is itself ~4000
/// bytes deep, so strata's merged paths are twice PATH_MAX. Each outcome and the state
/// it leaves (an error must mean nothing happened) are compared with overlayfs.
#[test]
fn every_operation_past_path_max() {
    let _g = serial();
    let fx = Fixture::new().lower(Layer::new().file("sub/x", "x\n"));
    let mut p = fx.pair();
    // Deep lower content: built in each lower between unmount and mount.
    p.o.unmount();
    p.s.unmount();
    for m in [&p.o, &p.s] {
        let low = At::open(&m.lowers[0]).mkdirs(&format!("low/{}", chain('l', 31)));
        let lf = low.mkdirs(&chain('m', 31));
        for (n, data) in [("lowfile", "lower data\n"), ("lowmeta", "lower meta\n")] {
            lf.create(&format!("{n}{}", "z".repeat(120)), data.as_bytes())
                .unwrap();
        }
    }
    p.o.mount();
    p.s.mount();
    let top = |m: &Mounted| At::open(&m.p("sub")).mkdirs(&chain('c', 31));
    let (to, ts) = (top(&p.o), top(&p.s));
    let d2 = chain('d', 31);
    to.mkdirs(&d2);
    ts.mkdirs(&d2);
    let f = format!("{d2}/{}", comp('f'));
    let g = format!("{d2}/{}", comp('g'));
    assert_eq!(f.len(), 4095);
    let both = |what: &str, op: &dyn Fn(&At) -> String| {
        let (o, s) = (op(&to), op(&ts));
        assert_eq!(o, s, "{what}: overlayfs (left) and strata (right) differ");
    };
    let state = |a: &At| format!("{:?} {:?} {:?}", a.stat(&f), a.stat(&g), a.names(&d2));
    type Step<'a> = (&'a str, Box<dyn Fn(&At) -> String + 'a>);
    let steps: Vec<Step> = vec![
        (
            "create",
            Box::new(|a| format!("{:?}", a.create(&f, b"data"))),
        ),
        (
            "create again",
            Box::new(|a| format!("{:?}", a.create(&f, b"x"))),
        ),
        ("chmod", Box::new(|a| format!("{:?}", a.chmod(&f, 0o640)))),
        (
            "chown",
            Box::new(|a| format!("{:?}", a.chown(&f, Some(1), Some(2)))),
        ),
        (
            "chown -1 -1",
            Box::new(|a| format!("{:?}", a.chown(&f, None, None))),
        ),
        (
            "truncate",
            Box::new(|a| format!("{:?} {:?}", a.truncate(&f, 3), a.read(&f))),
        ),
        (
            "utimes",
            Box::new(|a| format!("{:?} {:?}", a.utimes(&f, 5), a.mtime(&f))),
        ),
        ("xattr", Box::new(|a| format!("{:?}", a.xattr(&f, b"v")))),
        (
            "open+write",
            Box::new(|a| format!("{:?} {:?}", a.write_at(&f, 1, b"ZZ"), a.read(&f))),
        ),
        ("link", Box::new(|a| format!("{:?}", a.link(&f, &g)))),
        (
            "link onto existing",
            Box::new(|a| format!("{:?}", a.link(&f, &g))),
        ),
        ("unlink link", Box::new(|a| format!("{:?}", a.unlink(&g)))),
        ("rename", Box::new(|a| format!("{:?}", a.rename(&f, &g)))),
        (
            "rename back",
            Box::new(|a| format!("{:?}", a.rename(&g, &f))),
        ),
        (
            "mkfifo",
            Box::new(|a| format!("{:?}", a.mknod(&g, SFlag::S_IFIFO, 0o640, 0))),
        ),
        (
            "mkfifo over file",
            Box::new(|a| format!("{:?}", a.mknod(&f, SFlag::S_IFIFO, 0o600, 0))),
        ),
        ("unlink fifo", Box::new(|a| format!("{:?}", a.unlink(&g)))),
        (
            "mknod char",
            Box::new(|a| {
                format!(
                    "{:?}",
                    a.mknod(&g, SFlag::S_IFCHR, 0o600, libc::makedev(1, 3))
                )
            }),
        ),
        ("unlink char", Box::new(|a| format!("{:?}", a.unlink(&g)))),
        (
            "symlink",
            Box::new(|a| format!("{:?} {:?}", a.symlink("target", &g), a.readlink(&g))),
        ),
        (
            "symlink over file",
            Box::new(|a| format!("{:?}", a.symlink("t", &f))),
        ),
        (
            "unlink symlink",
            Box::new(|a| format!("{:?}", a.unlink(&g))),
        ),
        ("mkdir", Box::new(|a| format!("{:?}", a.mkdir(&g)))),
        ("rmdir file", Box::new(|a| format!("{:?}", a.rmdir(&f)))),
        (
            "chmod dir",
            Box::new(|a| format!("{:?}", a.chmod(&g, 0o700))),
        ),
        ("rmdir", Box::new(|a| format!("{:?}", a.rmdir(&g)))),
        ("rmdir again", Box::new(|a| format!("{:?}", a.rmdir(&g)))),
        (
            "unlink",
            Box::new(|a| format!("{:?} {:?}", a.unlink(&f), a.read(&f))),
        ),
    ];
    for (what, op) in &steps {
        both(what, &|a| format!("{} => {}", op(a), state(a)));
    }
    // Copy-up of deep lower files (their lower path is ~8000 bytes) and their parents.
    let low = |m: &Mounted| At::open(&m.p("low")).sub(&chain('l', 31));
    let (lo, ls) = (low(&p.o), low(&p.s));
    let lf = format!("{}/lowfile{}", chain('m', 31), "z".repeat(120));
    let lm = format!("{}/lowmeta{}", chain('m', 31), "z".repeat(120));
    let lboth = |what: &str, op: &dyn Fn(&At) -> String| {
        let (o, s) = (op(&lo), op(&ls));
        assert_eq!(o, s, "{what}: overlayfs (left) and strata (right) differ");
    };
    lboth("read deep lower", &|a| format!("{:?}", a.read(&lf)));
    lboth("write deep lower (copy-up)", &|a| {
        format!(
            "{:?} {:?} {:?}",
            a.write_at(&lf, 0, b"L"),
            a.read(&lf),
            a.stat(&lf)
        )
    });
    lboth("chmod deep lower (metadata copy-up)", &|a| {
        format!(
            "{:?} {:?} {:?}",
            a.chmod(&lm, 0o600),
            a.read(&lm),
            a.stat(&lm)
        )
    });
    drop((to, ts, lo, ls));
    p.remount();
    let (lo, ls) = (low(&p.o), low(&p.s));
    for (what, path) in [("deep copied-up file", &lf), ("deep metadata copy", &lm)] {
        assert_eq!(
            format!("{:?} {:?}", lo.read(path), lo.stat(path)),
            format!("{:?} {:?}", ls.read(path), ls.stat(path)),
            "{what} after remount"
        );
    }
    let (to, ts) = (top(&p.o), top(&p.s));
    assert_eq!(to.names(&d2), ts.names(&d2), "deep listing after remount");
}

/// Modes of new entries of every kind under umasks 0, 022, 077 and 0777: exactly what
/// ext4 gives (and overlayfs). The daemon's own umask (022 here) must play no part.
#[test]
fn modes_exact_for_every_umask() {
    let _g = serial();
    let old = sys::umask(0o022);
    let p = Fixture::new().lower(Layer::new().file("l", "l\n")).pair();
    let ext4 = TempDir::new("ext4");
    let run = |base: &Path, mask: u32| -> Vec<String> {
        let n = |what: &str| base.join(format!("{what}-{mask:o}"));
        let mut out = Vec::new();
        let mut note = |what: &str, r: R<()>| {
            let st = r.and_then(|()| sys::lstat(&n(what)));
            out.push(format!(
                "{what}: {:?}",
                st.map(|s| format!("{:o}", s.st_mode))
            ));
        };
        for mode in [0o666, 0o620, 0o777, 0o4755, 0o2770] {
            let w = format!("create{mode:o}");
            note(
                &w,
                sys::open(&n(&w), libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, mode).map(drop),
            );
        }
        for (w, mode) in [
            ("fifo", libc::S_IFIFO | 0o666),
            ("sock", libc::S_IFSOCK | 0o777),
        ] {
            note(w, sys::mknod(&n(w), mode, 0, 0));
        }
        note("chr", sys::mknod(&n("chr"), libc::S_IFCHR | 0o666, 1, 3));
        for mode in [0o777, 0o1777, 0o2750, 0o700] {
            let w = format!("mkdir{mode:o}");
            note(&w, sys::mkdir(&n(&w), mode));
        }
        note("symlink", sys::symlink("target", &n("symlink")));
        out
    };
    for mask in [0, 0o022, 0o077, 0o777] {
        sys::umask(mask);
        let e = run(&ext4.path, mask);
        let o = run(&p.o.mnt, mask);
        let s = run(&p.s.mnt, mask);
        sys::umask(0o022);
        assert_eq!(
            e, o,
            "umask {mask:o}: ext4 (left) and overlayfs (right) differ"
        );
        assert_eq!(
            e, s,
            "umask {mask:o}: ext4 (left) and strata (right) differ"
        );
    }
    sys::umask(old);
    let mut p: Pair = p;
    p.remount();
    p.same_tree("after remount");
}

/// `chown(path, -1, -1)` changes nothing but ctime, as Linux does, on upper files, lower
/// files (a metadata copy-up, as overlayfs does), directories and symlinks.
#[test]
fn chown_minus_one_updates_ctime() {
    let _g = serial();
    let lower = Layer::new()
        .file("lf", "lower\n")
        .dir("ld")
        .symlink("ll", "lf");
    let mut p = Fixture::new().lower(lower).pair();
    for m in [&p.o, &p.s] {
        m.put("uf", "upper\n").unwrap();
    }
    // ctime has a clock tick's granularity: let one pass since the files were made.
    std::thread::sleep(std::time::Duration::from_millis(30));
    for f in ["uf", "lf", "ld", "ll"] {
        p.both(&format!("chown -1 -1 {f}"), |m| {
            let before = m.lstat(f).unwrap();
            let r = sys::lchown(&m.p(f), u32::MAX, u32::MAX);
            let after = m.lstat(f).unwrap();
            let later =
                (after.st_ctime, after.st_ctime_nsec) > (before.st_ctime, before.st_ctime_nsec);
            let in_upper = m.upper_path(f).is_some_and(|u| sys::lstat(&u).is_ok());
            (r, later, in_upper, m.stat(f), m.read(f))
        });
    }
    p.remount();
    p.same_tree("after remount");
}

/// The steps of [`null_char_device_is_a_device`], on a directory that holds `lf` and
/// `lf2` (files), as ext4 or a mount.
fn null_device_steps(base: &Path) -> Vec<String> {
    let p = |n: &str| base.join(n);
    let st = |n: &str| sys::lstat(&p(n)).map(|s| Meta::from_stat(&s));
    let names = || {
        let mut v: Vec<String> = sys::readdir(base)
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        v.sort();
        v
    };
    let dev = |n: &str| sys::mknod(&p(n), libc::S_IFCHR | 0o640, 0, 0);
    vec![
        format!("mknod: {:?} {:?} {:?}", dev("n"), st("n"), names()),
        format!("mknod again: {:?}", dev("n")),
        format!(
            "create/mkdir/symlink over it: {:?} {:?} {:?}",
            sys::open(
                &p("n"),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                0o644
            )
            .map(drop),
            sys::mkdir(&p("n"), 0o755),
            sys::symlink("t", &p("n"))
        ),
        format!(
            "open: {:?}",
            sys::open(&p("n"), libc::O_RDONLY, 0).map(drop)
        ),
        format!("chmod: {:?} {:?}", sys::chmod(&p("n"), 0o600), st("n")),
        format!("rm: {:?} {:?} {:?}", sys::unlink(&p("n")), st("n"), names()),
        format!("recreate: {:?} {:?}", dev("n"), st("n")),
        format!(
            "over a deleted file: {:?} {:?} {:?}",
            sys::unlink(&p("lf")),
            dev("lf"),
            st("lf")
        ),
        format!("over a file: {:?} {:?}", dev("lf2"), st("lf2")),
        format!(
            "rename, link: {:?} {:?} {:?} {:?}",
            sys::rename2(&p("n"), &p("n2"), 0),
            sys::link(&p("n2"), &p("n3")),
            st("n3"),
            names()
        ),
    ]
}

/// `mknod NAME c 0 0` makes a character device 0/0 as on ext4 (not a name stuck as a
/// whiteout): listed, stat'able, removable, re-creatable, the same after a remount and
/// when its upper is stacked as a lower branch. Unmarked 0/0 devices in lower branches
/// stay whiteouts (whiteouts_hide_lower_entries in diff_overlay.rs).
#[test]
fn null_char_device_is_a_device() {
    let _g = serial();
    let ext4 = TempDir::new("ext4");
    for f in ["lf", "lf2"] {
        std::fs::write(ext4.join(f), "f\n").unwrap();
    }
    let fx = Fixture::new().lower(Layer::new().file("lf", "f\n").file("lf2", "f\n"));
    let mut s = fx.strata();
    let want = null_device_steps(&ext4.path);
    assert_eq!(
        want,
        null_device_steps(&s.mnt),
        "ext4 (left) and strata (right)"
    );
    let after = |m: &Path| {
        let st = |n: &str| sys::lstat(&m.join(n)).map(|s| Meta::from_stat(&s));
        let mut names: Vec<String> = sys::readdir(m).unwrap().into_iter().map(|e| e.0).collect();
        names.sort();
        format!("{names:?} {:?} {:?} {:?}", st("lf"), st("n2"), st("n3"))
    };
    let want_after = after(&ext4.path);
    assert_eq!(want_after, after(&s.mnt), "before remount");
    s.remount();
    assert_eq!(want_after, after(&s.mnt), "after remount");
    // The upper as a lower branch (a committed layer): the devices are still devices.
    s.unmount();
    let stack = TempDir::new("stack");
    let mnt = stack.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let opts = format!(
        "lowerdir={}:{}",
        s.upper.as_ref().unwrap().display(),
        s.lowers[0].display()
    );
    let (ok, log) =
        strata_tests::run_strata(&["-o", &opts, &mnt.to_string_lossy()], &stack.join("log"));
    assert!(ok, "{log}");
    let stacked = after(&mnt);
    let daemons = strata_tests::mount::pids_with_arg(&mnt.to_string_lossy());
    strata_tests::mount::unmount_path(&mnt).unwrap();
    strata_tests::mount::reap_daemons(&daemons);
    assert_eq!(want_after, stacked, "upper stacked as a lower branch");
}
