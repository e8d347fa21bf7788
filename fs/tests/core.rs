//! The union core in-process: a `Union` built over temporary directories with
//! `strata_fs::prepare`, its operations called directly. No mount, no /dev/fuse; without
//! root the records go into `user.*` xattrs. Beside the end-to-end tests in tests/, which
//! compare a real mount against kernel overlayfs; these pin the core's behaviour per
//! concept (resolve, whiteouts, opaque directories, copy-up, redirects, deltas, hard links).

// Helpers outside #[test] fns: a failed unwrap is the test failing, as in the tests themselves.
#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use strata_fs::types::Ctx;
use strata_fs::{MountOptions, Union};

/// The root node of every union.
const ROOT: u64 = 1;

/// A stack of temporary branches, removed when dropped.
struct Stack {
    dir: PathBuf,
    lowers: Vec<PathBuf>,
}

impl Stack {
    /// `n` empty lower branches (index 0 is the topmost), an empty upper and a workdir.
    fn new(n: usize) -> Stack {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "strata-core-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        let lowers: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("lower{i}"))).collect();
        for d in lowers.iter().chain([&dir.join("upper"), &dir.join("work")]) {
            fs::create_dir_all(d).unwrap();
        }
        Stack { dir, lowers }
    }

    fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// A file in lower `i` (parents made as needed).
    fn lower_file(&self, i: usize, rel: &str, data: &[u8]) {
        put(&self.lowers[i].join(rel), data);
    }

    /// The union over the stack, with extra `-o` options.
    fn union(&self, extra: &str) -> Union {
        let lowers: Vec<String> = self
            .lowers
            .iter()
            .map(|l| l.display().to_string())
            .collect();
        let mut o = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            self.upper().display(),
            self.dir.join("work").display()
        );
        if !extra.is_empty() {
            o = format!("{o},{extra}");
        }
        let opts = MountOptions::parse(&[o]).unwrap();
        strata_fs::prepare(opts).unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn put(p: &Path, data: &[u8]) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn ctx() -> Ctx {
    Ctx {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        umask: 0o022,
    }
}

/// The node at merged path `rel` ("a/b").
fn walk(u: &Union, rel: &str) -> io::Result<u64> {
    let mut ino = ROOT;
    for c in rel.split('/').filter(|c| !c.is_empty()) {
        ino = u.lookup(ino, OsStr::new(c))?.ino;
    }
    Ok(ino)
}

fn errno_of<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    r.unwrap_err().raw_os_error().unwrap()
}

/// The whole content of merged file `rel`.
fn cat(u: &Union, rel: &str) -> Vec<u8> {
    let ino = walk(u, rel).unwrap();
    let size = u.getattr(ino).unwrap().size;
    let fh = u.open(ino, libc::O_RDONLY).unwrap();
    let data = u.read(fh, 0, u32::try_from(size).unwrap()).unwrap();
    u.release(fh);
    data
}

/// Write `data` at `off` of merged file `rel`.
fn write_at(u: &Union, rel: &str, off: u64, data: &[u8]) {
    let ino = walk(u, rel).unwrap();
    let fh = u.open(ino, libc::O_RDWR).unwrap();
    assert_eq!(u.write(fh, off, data).unwrap(), data.len());
    u.release(fh);
}

/// The names in merged directory `rel`, sorted, without "." and "..".
fn ls(u: &Union, rel: &str) -> Vec<String> {
    let ino = walk(u, rel).unwrap();
    let fh = u.opendir(ino).unwrap();
    let (entries, _) = u.readdir(fh, 0, false).unwrap();
    u.releasedir(fh);
    let mut v: Vec<String> = entries
        .iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    v.sort();
    v
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn resolve_takes_the_topmost_branch_and_merges_directories() {
    let s = Stack::new(2);
    s.lower_file(0, "f", b"top");
    s.lower_file(1, "f", b"bottom");
    s.lower_file(1, "d/a", b"a");
    s.lower_file(0, "d/b", b"b");
    put(&s.upper().join("d/c"), b"c");
    let u = s.union("");
    assert_eq!(cat(&u, "f"), b"top");
    assert_eq!(ls(&u, "d"), names(&["a", "b", "c"]));
    assert_eq!(cat(&u, "d/a"), b"a");
    assert_eq!(errno_of(walk(&u, "nope")), libc::ENOENT);
    // Lookups of one name answer one node; its number is what getattr reports.
    let a = walk(&u, "d/a").unwrap();
    assert_eq!(walk(&u, "d/a").unwrap(), a);
    assert_eq!(u.getattr(a).unwrap().ino, a);
}

#[test]
fn whiteouts_hide_lower_entries_and_unlink_writes_one() {
    let s = Stack::new(1);
    s.lower_file(0, "gone", b"x");
    s.lower_file(0, "kept", b"y");
    s.lower_file(0, "del", b"z");
    // An overlay-style whiteout file already in the upper.
    put(&s.upper().join(".wh.gone"), b"");
    let u = s.union("");
    assert_eq!(errno_of(walk(&u, "gone")), libc::ENOENT);
    assert_eq!(ls(&u, ""), names(&["del", "kept"]));
    // Unlinking a lower file leaves the lower alone and hides it, across a new union.
    u.unlink(ROOT, OsStr::new("del")).unwrap();
    assert_eq!(errno_of(walk(&u, "del")), libc::ENOENT);
    assert!(s.lowers[0].join("del").exists());
    drop(u);
    let u = s.union("");
    assert_eq!(errno_of(walk(&u, "del")), libc::ENOENT);
    assert_eq!(ls(&u, ""), names(&["kept"]));
    // A new file over the whiteout shows again, with the new content only.
    let (attr, fh) = u
        .create(ROOT, OsStr::new("del"), 0o644, libc::O_RDWR, &ctx())
        .unwrap();
    u.write(fh, 0, b"new").unwrap();
    u.release(fh);
    assert_eq!(attr.size, 0);
    assert_eq!(cat(&u, "del"), b"new");
    assert_eq!(ls(&u, ""), names(&["del", "kept"]));
}

#[test]
fn opaque_directories_hide_the_lower_contents() {
    let s = Stack::new(1);
    s.lower_file(0, "d/a", b"a");
    s.lower_file(0, "e/x", b"x");
    put(&s.upper().join("d/.wh..wh..opq"), b"");
    put(&s.upper().join("d/b"), b"b");
    let u = s.union("");
    assert_eq!(ls(&u, "d"), names(&["b"]));
    assert_eq!(errno_of(walk(&u, "d/a")), libc::ENOENT);
    // Emptied, removed and made again through the union: the new directory is opaque.
    let e = walk(&u, "e").unwrap();
    u.unlink(e, OsStr::new("x")).unwrap();
    u.rmdir(ROOT, OsStr::new("e")).unwrap();
    u.mkdir(ROOT, OsStr::new("e"), 0o755, &ctx()).unwrap();
    assert_eq!(ls(&u, "e"), Vec::<String>::new());
    drop(u);
    let u = s.union("");
    assert_eq!(ls(&u, "e"), Vec::<String>::new());
    assert_eq!(errno_of(walk(&u, "e/x")), libc::ENOENT);
    // rmdir of a merged directory that still shows lower entries is refused.
    s.lower_file(0, "full/y", b"y");
    let u = s.union("");
    assert_eq!(errno_of(u.rmdir(ROOT, OsStr::new("full"))), libc::ENOTEMPTY);
}

#[test]
fn copy_up_on_write_keeps_the_lower_file_and_the_mode() {
    let s = Stack::new(1);
    s.lower_file(0, "dir/f", b"hello world");
    fs::set_permissions(s.lowers[0].join("dir/f"), fs::Permissions::from_mode(0o640)).unwrap();
    let u = s.union("nodelta");
    write_at(&u, "dir/f", 0, b"HELLO");
    assert_eq!(cat(&u, "dir/f"), b"HELLO world");
    assert_eq!(fs::read(s.lowers[0].join("dir/f")).unwrap(), b"hello world");
    // The whole file is in the upper now, with its parent and its mode.
    assert_eq!(fs::read(s.upper().join("dir/f")).unwrap(), b"HELLO world");
    let m = fs::metadata(s.upper().join("dir/f")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!(
        u.getattr(walk(&u, "dir/f").unwrap()).unwrap().mode & 0o7777,
        0o640
    );
    // The node keeps its number across the copy-up.
    drop(u);
    let u = s.union("nodelta");
    assert_eq!(cat(&u, "dir/f"), b"HELLO world");
}

#[test]
fn a_renamed_lower_directory_is_found_through_its_redirect() {
    let s = Stack::new(1);
    s.lower_file(0, "old/a", b"a");
    s.lower_file(0, "old/sub/b", b"b");
    let u = s.union("");
    u.rename(ROOT, OsStr::new("old"), ROOT, OsStr::new("new"), 0)
        .unwrap();
    assert_eq!(errno_of(walk(&u, "old")), libc::ENOENT);
    assert_eq!(ls(&u, "new"), names(&["a", "sub"]));
    assert_eq!(cat(&u, "new/sub/b"), b"b");
    // The lower is untouched; a new union over the same branches finds the redirect.
    assert!(s.lowers[0].join("old/a").exists());
    assert!(!s.lowers[0].join("new").exists());
    drop(u);
    let u = s.union("");
    assert_eq!(errno_of(walk(&u, "old")), libc::ENOENT);
    assert_eq!(ls(&u, "new"), names(&["a", "sub"]));
    assert_eq!(cat(&u, "new/a"), b"a");
}

#[test]
fn a_small_write_to_a_large_lower_file_is_a_delta() {
    let s = Stack::new(1);
    let lower: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    s.lower_file(0, "big", &lower);
    let u = s.union("delta_threshold=65536");
    write_at(&u, "big", 8192, b"PATCH");
    let mut want = lower.clone();
    want[8192..8197].copy_from_slice(b"PATCH");
    assert_eq!(cat(&u, "big"), want);
    // The upper holds a sparse file: the written block, not the 256 KiB.
    let m = fs::metadata(s.upper().join("big")).unwrap();
    assert_eq!(m.len(), lower.len() as u64);
    assert!(
        m.blocks() * 512 < 64 * 1024,
        "{} bytes allocated",
        m.blocks() * 512
    );
    assert_eq!(fs::read(s.lowers[0].join("big")).unwrap(), lower);
    // Read back the same by a new union, and written again past the first block.
    drop(u);
    let u = s.union("delta_threshold=65536");
    assert_eq!(cat(&u, "big"), want);
    write_at(&u, "big", 200_000, b"more");
    want[200_000..200_004].copy_from_slice(b"more");
    assert_eq!(cat(&u, "big"), want);
    // Below the threshold a write copies the whole file up.
    s.lower_file(0, "small", b"0123456789");
    let u = s.union("delta_threshold=65536");
    write_at(&u, "small", 2, b"xx");
    assert_eq!(fs::read(s.upper().join("small")).unwrap(), b"01xx456789");
}

#[test]
fn hard_links_share_one_node_and_its_writes() {
    let s = Stack::new(1);
    s.lower_file(0, "f", b"one");
    fs::hard_link(s.lowers[0].join("f"), s.lowers[0].join("g")).unwrap();
    let u = s.union("nodelta");
    let f = walk(&u, "f").unwrap();
    let g = walk(&u, "g").unwrap();
    assert_eq!(u.getattr(f).unwrap().nlink, 2);
    assert_eq!(u.getattr(f).unwrap().ino, u.getattr(g).unwrap().ino);
    // A write through one lower link reads back through the other (copy-up keeps them one).
    write_at(&u, "f", 0, b"ONE");
    assert_eq!(cat(&u, "g"), b"ONE");
    // A new link made through the union joins them.
    let a = u.link(f, ROOT, OsStr::new("h"), &ctx()).unwrap();
    assert_eq!(a.ino, u.getattr(f).unwrap().ino);
    assert_eq!(a.nlink, 3);
    write_at(&u, "h", 2, b"!");
    assert_eq!(cat(&u, "f"), b"ON!");
    assert_eq!(cat(&u, "g"), b"ON!");
    // Unlinking one name leaves the others and the count.
    u.unlink(ROOT, OsStr::new("g")).unwrap();
    assert_eq!(u.getattr(walk(&u, "h").unwrap()).unwrap().nlink, 2);
    assert_eq!(cat(&u, "h"), b"ON!");
    drop(u);
    let u = s.union("nodelta");
    assert_eq!(errno_of(walk(&u, "g")), libc::ENOENT);
    assert_eq!(cat(&u, "f"), b"ON!");
    assert_eq!(
        u.getattr(walk(&u, "f").unwrap()).unwrap().ino,
        u.getattr(walk(&u, "h").unwrap()).unwrap().ino
    );
}

/// The core tests need no root. Run as root (as CI does), this runs the test binary again
/// as nobody (uid and gid 65534, no groups) from a private directory, with HOME and TMPDIR
/// there, and expects every other test of the file to pass; run unprivileged, the other
/// tests are the proof themselves.
#[test]
fn the_core_tests_pass_without_root() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("strata-core-nobody-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    // A copy of the binary nobody can run, wherever the target directory is.
    let exe = dir.join("core-tests");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = Some(nix::unistd::Uid::from_raw(65534));
    nix::unistd::chown(&dir, nobody, Some(nix::unistd::Gid::from_raw(65534))).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["--skip", "the_core_tests_pass_without_root"])
        .env("HOME", &dir)
        .env("TMPDIR", &dir)
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("test result: ok.") && !text.contains("ok. 0 passed"),
        "the core tests fail as nobody: {text}"
    );
}
