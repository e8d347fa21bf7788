//! Hostile layers at mount time (symlinks out of the branches are in hostile_symlinks.rs):
//! whiteouts with odd names, a directory in a lower where the upper has a file and the
//! reverse, a missing workdir, a workdir on another filesystem, an upper that is not
//! writable. Each gives a clear one-line error with nothing mounted, or correct overlay
//! behaviour; never access outside the branches, never a daemon crash (the mount stays
//! alive and other files keep working).

use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_tests::mount::{mounts_under, pids_with_arg, reap_daemons, unmount_path};
use strata_tests::sys;
use strata_tests::{is_mounted, run_strata, wait_until, Errno, Fixture, Layer, TempDir};

/// A strata mount of raw branch dirs, unmounted (and its daemon reaped) on drop.
struct RawMount {
    mnt: PathBuf,
    daemons: Vec<i32>,
    log: PathBuf,
}

impl RawMount {
    /// Mount `opts` on `mnt`: Ok(mount) or Err(the output of the failed command).
    fn try_new(dir: &TempDir, opts: &str) -> Result<RawMount, String> {
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let log = dir.join("strata.log");
        let _ = std::fs::remove_file(&log);
        let (ok, text) = run_strata(&["-o", opts, mnt.to_str().unwrap()], &log);
        if !ok {
            assert!(
                !is_mounted(&mnt),
                "failed, yet {} is mounted",
                mnt.display()
            );
            return Err(text);
        }
        assert!(is_mounted(&mnt), "exited 0 but nothing mounted:\n{text}");
        let daemons = pids_with_arg(mnt.to_str().unwrap());
        Ok(RawMount { mnt, daemons, log })
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// The mount still answers and its daemon lives.
    fn alive(&self, what: &str) {
        assert!(is_mounted(&self.mnt), "{what}: the mount is gone");
        assert!(
            sys::lstat(&self.mnt).is_ok(),
            "{what}: the mount root no longer answers:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        for p in &self.daemons {
            assert!(
                strata_tests::mount::pid_alive(*p),
                "{what}: daemon {p} died:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Drop for RawMount {
    fn drop(&mut self) {
        let _ = unmount_path(&self.mnt);
        reap_daemons(&self.daemons);
    }
}

/// A tmpfs or bind mount, detached on drop.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = sys::umount2(&self.0, libc::MNT_DETACH);
    }
}

/// The error lines of a failed strata command (its log may hold tracing lines too).
fn error_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("strata:") || l.contains("ERROR") || l.contains("rror:"))
        .collect()
}

fn branches(dir: &TempDir) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let (l1, l2, u, w) = (dir.join("l1"), dir.join("l2"), dir.join("u"), dir.join("w"));
    for d in [&l1, &l2, &u, &w] {
        std::fs::create_dir_all(d).unwrap();
    }
    (l1, l2, u, w)
}

fn opts(lowers: &[&Path], upper: &Path, work: &Path) -> String {
    let l: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    format!(
        "lowerdir={},upperdir={},workdir={}",
        l.join(":"),
        upper.display(),
        work.display()
    )
}

#[test]
fn oddly_named_whiteouts_in_a_lower() {
    let dir = TempDir::new("wh");
    let (l1, l2, u, w) = branches(&dir);
    // Bottom layer: files the whiteouts may (or may not) hide.
    let long = "n".repeat(251);
    for name in ["keep", "wh", long.as_str(), "d/inner"] {
        let p = l2.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, name).unwrap();
    }
    // Top lower: OCI whiteouts with odd names (files named .wh.*) and char 0/0 ones.
    let long_wh = format!(".wh.{long}");
    assert_eq!(long_wh.len(), 255);
    for name in [
        ".wh.",
        ".wh..wh.",
        ".wh..",
        ".wh...",
        "d/.wh...",
        "d/.wh.",
        long_wh.as_str(),
    ] {
        let p = l1.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"").unwrap();
    }
    let m = RawMount::try_new(&dir, &opts(&[&l1, &l2], &u, &w)).expect("mount");
    // Listing everything must not crash the daemon; `.`/`..` are never hidden.
    let root = sys::readdir(&m.mnt).unwrap();
    let names: Vec<&str> = root.iter().map(|(n, _, _)| n.as_str()).collect();
    m.alive("readdir /");
    assert!(names.contains(&"keep"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with(".wh.")),
        "whiteouts shown: {names:?}"
    );
    // The 255-byte whiteout hides the 251-byte name.
    assert_eq!(
        sys::lstat(&m.p(&long)).err(),
        Some(Errno::ENOENT),
        "the long whiteout does not hide its file"
    );
    let d = sys::readdir(&m.p("d")).unwrap();
    let dn: Vec<&str> = d.iter().map(|(n, _, _)| n.as_str()).collect();
    assert!(dn.contains(&"inner"), "{dn:?}");
    m.alive("readdir /d");
    // `..` still leads to the parent, `.` to the dir itself.
    let st_root = sys::lstat(&m.mnt).unwrap();
    let st_up = sys::lstat(&m.p("d/..")).unwrap();
    assert_eq!(
        (st_root.st_ino, st_root.st_dev),
        (st_up.st_ino, st_up.st_dev)
    );
    assert_eq!(std::fs::read(m.p("d/inner")).unwrap(), b"d/inner");
    assert_eq!(std::fs::read(m.p("keep")).unwrap(), b"keep");
    // Names starting with .wh. can neither be looked up nor created through the mount.
    for name in [".wh.", ".wh..wh.", ".wh...", long_wh.as_str()] {
        assert!(sys::lstat(&m.p(name)).is_err(), "{name} visible");
        assert!(std::fs::write(m.p(name), b"x").is_err(), "{name} created");
    }
    // Writing and deleting next to them keeps working.
    std::fs::write(m.p("new"), b"new").unwrap();
    std::fs::remove_file(m.p("keep")).unwrap();
    assert_eq!(sys::lstat(&m.p("keep")).err(), Some(Errno::ENOENT));
    std::fs::write(m.p("d/inner"), b"changed").unwrap();
    assert_eq!(std::fs::read(m.p("d/inner")).unwrap(), b"changed");
    m.alive("after writes");
    // The lowers are untouched.
    assert_eq!(std::fs::read(l2.join("keep")).unwrap(), b"keep");
    assert_eq!(std::fs::read(l2.join("d/inner")).unwrap(), b"d/inner");
}

#[test]
fn file_over_dir_and_dir_over_file_match_overlayfs() {
    let fx = Fixture::new()
        .lower(
            Layer::new()
                .dir("x")
                .file("x/f", "lower x/f")
                .file("y", "lower file y")
                .dir("z/deep")
                .file("z/deep/f", "z"),
        )
        .upper(
            Layer::new()
                .file("x", "upper file x")
                .dir("y")
                .file("y/g", "upper y/g")
                .file("z", "upper z"),
        );
    let mut pair = fx.pair();
    pair.both("read x", |m| m.read("x"));
    pair.both("x/f through a file", |m| m.read("x/f"));
    pair.both("readdir y", |m| m.names("y"));
    pair.both("read y/g", |m| m.read("y/g"));
    pair.both("z/deep/f", |m| m.stat("z/deep/f").map(|s| s.kind));
    pair.both("unlink x", |m| m.unlink("x"));
    pair.both("mkdir x", |m| m.mkdir("x", 0o755));
    pair.both("readdir new x", |m| m.names("x"));
    pair.both("rmdir y", |m| m.rmdir("y"));
    pair.both("unlink y/g", |m| m.unlink("y/g"));
    pair.both("rmdir y now", |m| m.rmdir("y"));
    pair.both("y gone", |m| m.read("y"));
    pair.same_tree("file over dir and back");
    pair.remount();
    pair.same_tree("after remount");
}

#[test]
fn missing_workdir_is_a_clear_error() {
    let dir = TempDir::new("nowork");
    let (l1, _l2, u, _w) = branches(&dir);
    std::fs::write(l1.join("f"), "f").unwrap();
    let missing = dir.join("no/such/work");
    match RawMount::try_new(&dir, &opts(&[&l1], &u, &missing)) {
        Err(text) => {
            let errs = error_lines(&text);
            assert_eq!(errs.len(), 1, "one error line: {text}");
            assert!(errs[0].contains("work"), "names the workdir: {text}");
        }
        Ok(m) => {
            // Created on demand: then the union must work.
            std::fs::write(m.p("f"), "changed").unwrap();
            assert_eq!(std::fs::read(m.p("f")).unwrap(), b"changed");
            m.alive("missing workdir created");
        }
    }
    assert!(mounts_under(&dir.path).is_empty());
    // A lowerdir that does not exist, an upperdir that is a file.
    let text = RawMount::try_new(&dir, &opts(&[&dir.join("nolower")], &u, &dir.join("w")))
        .err()
        .expect("a missing lowerdir must fail");
    assert_eq!(error_lines(&text).len(), 1, "{text}");
    std::fs::write(dir.join("ufile"), "").unwrap();
    let text = RawMount::try_new(&dir, &opts(&[&l1], &dir.join("ufile"), &dir.join("w")))
        .err()
        .expect("an upperdir that is a file must fail");
    assert_eq!(error_lines(&text).len(), 1, "{text}");
}

#[test]
fn workdir_on_another_filesystem() {
    let dir = TempDir::new("xdev");
    let (l1, _l2, u, w) = branches(&dir);
    std::fs::write(l1.join("f"), "lower f").unwrap();
    std::fs::create_dir_all(l1.join("d")).unwrap();
    std::fs::write(l1.join("d/g"), "lower g").unwrap();
    sys::mount("tmpfs", &w, "tmpfs", 0, "size=16m").unwrap();
    let _tmpfs = MountGuard(w.clone());
    match RawMount::try_new(&dir, &opts(&[&l1], &u, &w)) {
        Err(text) => {
            eprintln!("workdir on tmpfs: refused: {text}");
            let errs = error_lines(&text);
            assert_eq!(errs.len(), 1, "one error line: {text}");
            assert!(errs[0].contains("work"), "names the workdir: {text}");
        }
        Ok(m) => {
            eprintln!("workdir on tmpfs: accepted");
            // Accepted: copy-up, create, rename and delete must all work.
            std::fs::write(m.p("f"), "changed").unwrap();
            assert_eq!(std::fs::read(m.p("f")).unwrap(), b"changed");
            std::fs::write(m.p("d/new"), "new").unwrap();
            std::fs::rename(m.p("d"), m.p("d2")).unwrap();
            assert_eq!(std::fs::read(m.p("d2/g")).unwrap(), b"lower g");
            std::fs::remove_file(m.p("d2/g")).unwrap();
            m.alive("workdir on tmpfs");
            assert_eq!(std::fs::read(u.join("f")).unwrap(), b"changed");
            assert_eq!(std::fs::read(l1.join("f")).unwrap(), b"lower f");
        }
    }
}

#[test]
fn read_only_upper() {
    let dir = TempDir::new("roupper");
    let (l1, _l2, u, w) = branches(&dir);
    std::fs::write(l1.join("f"), "lower f").unwrap();
    std::fs::write(u.join("up"), "upper file").unwrap();
    let ro = dir.join("u-ro");
    std::fs::create_dir_all(&ro).unwrap();
    sys::mount(u.to_str().unwrap(), &ro, "", libc::MS_BIND, "").unwrap();
    let _bind = MountGuard(ro.clone());
    sys::mount(
        "",
        &ro,
        "",
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
        "",
    )
    .unwrap();
    assert!(std::fs::write(ro.join("probe"), "x").is_err());
    match RawMount::try_new(&dir, &opts(&[&l1], &ro, &w)) {
        Err(text) => {
            eprintln!("read-only upper: refused: {text}");
            let errs = error_lines(&text);
            assert_eq!(errs.len(), 1, "one error line: {text}");
            assert!(
                errs[0].contains("upper") || errs[0].contains("read-only"),
                "names the problem: {text}"
            );
        }
        Ok(m) => {
            eprintln!("read-only upper: mounted, writes refused");
            // Reads work, writes fail cleanly (EROFS/EACCES), the daemon lives.
            assert_eq!(std::fs::read(m.p("f")).unwrap(), b"lower f");
            assert_eq!(std::fs::read(m.p("up")).unwrap(), b"upper file");
            let e = std::fs::write(m.p("f"), "x").unwrap_err();
            assert!(
                matches!(
                    e.raw_os_error(),
                    Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM)
                ),
                "{e}"
            );
            assert!(std::fs::write(m.p("new"), "x").is_err());
            assert!(std::fs::remove_file(m.p("up")).is_err());
            m.alive("read-only upper");
            assert_eq!(std::fs::read(m.p("f")).unwrap(), b"lower f");
        }
    }
    assert_eq!(std::fs::read(l1.join("f")).unwrap(), b"lower f");
    assert_eq!(std::fs::read(u.join("up")).unwrap(), b"upper file");
}

#[test]
fn whiteout_char_devices_with_odd_names_and_a_vanishing_lower() {
    // Kernel-format whiteouts (char 0/0) named like OCI ones, and a lower dir removed while
    // mounted: errors for what is gone, the rest keeps working.
    let dir = TempDir::new("whchr");
    let (l1, l2, u, w) = branches(&dir);
    std::fs::write(l2.join(".wh.x"), "a real file named .wh.x in the bottom").unwrap();
    std::fs::write(l2.join("x"), "x").unwrap();
    std::fs::create_dir_all(l2.join("gone")).unwrap();
    std::fs::write(l2.join("gone/f"), "f").unwrap();
    sys::mknod(&l1.join(".wh.x"), libc::S_IFCHR, 0, 0).unwrap();
    let m = RawMount::try_new(&dir, &opts(&[&l1, &l2], &u, &w)).expect("mount");
    let _ = sys::readdir(&m.mnt).unwrap();
    m.alive("readdir");
    // A char 0/0 named .wh.x reads as an OCI whiteout of x (strata) or as a kernel
    // whiteout of .wh.x (overlayfs): either x is hidden or it is the bottom's x.
    match std::fs::read(m.p("x")) {
        Ok(b) => assert_eq!(b, b"x"),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT)),
    }
    m.alive("lookup x");
    std::fs::remove_dir_all(l2.join("gone")).unwrap();
    let r = std::fs::read(m.p("gone/f"));
    assert!(r.is_err() || r.as_deref().ok() == Some(&b"f"[..]));
    assert!(wait_until(Duration::from_secs(5), || sys::lstat(&m.mnt).is_ok()));
    std::fs::write(m.p("after"), "ok").unwrap();
    assert_eq!(std::fs::read(m.p("after")).unwrap(), b"ok");
    m.alive("after a lower dir vanished");
}

#[test]
fn pathological_trace_glob_does_not_hang_the_daemon() {
    // Found by fuzz/mount_options: `trace_path=` globs with many `*` were matched by
    // backtracking, exponential in the number of stars: the request thread spins forever.
    let dir = TempDir::new("glob");
    let (l1, _l2, u, w) = branches(&dir);
    let name = "a".repeat(40);
    std::fs::write(l1.join(&name), "a").unwrap();
    let pattern = format!("/{}x", "*".repeat(40));
    let o = format!(
        "{},trace={},trace_path={pattern}",
        opts(&[&l1], &u, &w),
        dir.join("trace.jsonl").display()
    );
    let m = RawMount::try_new(&dir, &o).expect("mount");
    let p = m.p(&name);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // More requests than the daemon has threads.
        for _ in 0..64 {
            let r = std::fs::read(&p).map_err(|e| e.to_string());
            let _ = sys::lstat(&p);
            if tx.send(r).is_err() {
                return;
            }
        }
    });
    // A deadline against a hang, not a timing assertion: each read takes microseconds.
    for i in 0..64 {
        let got = rx.recv_timeout(Duration::from_secs(60));
        assert!(
            matches!(got, Ok(Ok(ref b)) if b == b"a"),
            "read {i} under trace_path={pattern} did not complete: {got:?}"
        );
    }
    m.alive("after the glob");
    // The daemon must also be able to finish: it exits after the unmount.
    unmount_path(&m.mnt).unwrap();
    let gone = wait_until(Duration::from_secs(60), || {
        m.daemons
            .iter()
            .all(|p| !strata_tests::mount::pid_alive(*p))
    });
    assert!(
        gone,
        "the daemon is still busy matching trace_path={pattern} after the unmount"
    );
}

#[test]
fn id_mapping_ranges_past_u32_max() {
    // uidmapping=IN:OUT:LEN with IN+LEN past 2^32: ids at the end of the range overflow
    // when translated (a panic in a debug daemon, a wrong owner in a release one).
    let dir = TempDir::new("idmap");
    let (l1, _l2, u, w) = branches(&dir);
    std::fs::write(l1.join("f5"), "5").unwrap();
    sys::lchown(&l1.join("f5"), 5, 5).unwrap();
    std::fs::write(l1.join("f0"), "0").unwrap();
    let o = format!(
        "{},uidmapping=4294967295:0:10,gidmapping=4294967295:0:10",
        opts(&[&l1], &u, &w)
    );
    match RawMount::try_new(&dir, &o) {
        Err(text) => {
            // Refusing the mapping is fine: one line naming it.
            let errs = error_lines(&text);
            assert_eq!(errs.len(), 1, "{text}");
            assert!(errs[0].contains("mapping"), "{text}");
        }
        Ok(m) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let p = m.p("f5");
            std::thread::spawn(move || {
                let _ = tx.send(sys::lstat(&p).map(|st| st.st_uid));
            });
            let got = rx.recv_timeout(Duration::from_secs(60));
            // 4294967295 + 5 is not an id: the overflow id, like the kernel.
            assert_eq!(got, Ok(Ok(65534)), "stat of a file owned by uid 5");
            assert_eq!(std::fs::read(m.p("f0")).unwrap(), b"0");
            m.alive("id mapping past u32::MAX");
        }
    }
}
