//! Mount flags through a strata mount, with kernel overlayfs as the oracle: the atime
//! flags (noatime, relatime, strictatime, nodiratime, lazytime), mtime/ctime after a write
//! through a shared writable mmap, and `remount` (ro, rw, nosuid, nodev, noexec, noatime)
//! from `strata mount`, from `mount -t fuse.strata` / `mount -o remount` (mount(8) runs
//! mount.fuse3, which runs strata) and from an fstab line (`mount -T FILE`, so the host's
//! /etc/fstab is never read or changed). No timing assertions: "changed or not" after
//! sleeping past the timestamp granularity.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use strata_tests::mount::{pids_with_arg, reap_daemons, run_strata, unmount_path};
use strata_tests::{sys, Fixture, Layer, Mounted, TempDir};

/// Longer than the coarse clock tick file timestamps use (a jiffy, at most 10 ms).
const TICK: Duration = Duration::from_millis(40);

/// The entries whose atime is watched: lower file, upper file, lower dir, upper dir.
const WATCHED: [&str; 4] = ["lf", "uf", "ld", "ud"];

/// Branches for one union on a tmpfs mounted `strictatime`, so the base filesystem never
/// hides a difference (overlayfs applies the upper mount's atime flags too).
struct Branches {
    root: PathBuf,
    mnt: PathBuf,
    strata: bool,
}

impl Branches {
    fn new(base: &Path, name: &str, strata: bool) -> Branches {
        let root = base.join(name);
        for d in ["l/ld", "u/ud", "w", "m"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("l/lf"), "lower\n").unwrap();
        std::fs::write(root.join("l/ld/x"), "x\n").unwrap();
        std::fs::write(root.join("u/uf"), "upper\n").unwrap();
        std::fs::write(root.join("u/ud/y"), "y\n").unwrap();
        // Old times, so that relatime has a reason to update on the first read.
        for p in ["l/lf", "u/uf", "l/ld", "u/ud"] {
            sys::lutimens(&root.join(p), (1_577_836_800, 0), (1_577_836_800, 0)).unwrap();
        }
        let mnt = root.join("m");
        Branches { root, mnt, strata }
    }

    fn mount(&self, flags: &str) {
        let r = |p: &str| self.root.join(p).display().to_string();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={},{flags}",
            r("l"),
            r("u"),
            r("w")
        );
        if self.strata {
            let mnt = self.mnt.display().to_string();
            let (ok, log) = run_strata(&["mount", "-o", &opts, &mnt], &self.root.join("log"));
            assert!(ok, "strata mount -o {opts}: {log}");
        } else {
            // mount(8) turns the flag words into MS_* flags.
            let out = Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &opts])
                .arg(&self.mnt)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "mount -t overlay -o {opts}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn remount(&self, flags: &str) {
        let mnt = self.mnt.display().to_string();
        let out = if self.strata {
            Command::new(strata_tests::strata_bin())
                .args(["mount", "-o", &format!("remount,{flags}"), &mnt])
                .output()
        } else {
            Command::new("mount")
                .args(["-o", &format!("remount,{flags}"), &mnt])
                .output()
        }
        .unwrap();
        assert!(
            out.status.success(),
            "remount,{flags} {mnt} (strata: {}): {}",
            self.strata,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn unmount(&self) {
        let pids = pids_with_arg(&self.mnt.display().to_string());
        unmount_path(&self.mnt).unwrap();
        reap_daemons(&pids);
    }

    fn atimes(&self) -> Vec<(i64, i64)> {
        WATCHED
            .iter()
            .map(|p| {
                let st = sys::lstat(&self.mnt.join(p)).unwrap();
                (st.st_atime, st.st_atime_nsec)
            })
            .collect()
    }

    /// Read both files and list both directories.
    fn access(&self) {
        for f in ["lf", "uf"] {
            std::fs::read(self.mnt.join(f)).unwrap();
        }
        for d in ["ld", "ud"] {
            assert_eq!(std::fs::read_dir(self.mnt.join(d)).unwrap().count(), 1);
        }
    }

    /// Which watched atimes changed across one access, after a clock tick.
    fn access_changes(&self) -> Vec<bool> {
        let before = self.atimes();
        std::thread::sleep(TICK);
        self.access();
        let after = self.atimes();
        before.iter().zip(&after).map(|(a, b)| a != b).collect()
    }
}

/// A strictatime tmpfs in `dir` (detached by the TempDir's drop).
fn base_dir(dir: &TempDir) -> PathBuf {
    let b = dir.join("base");
    std::fs::create_dir_all(&b).unwrap();
    sys::mount(
        "tmpfs",
        &b,
        "tmpfs",
        libc::MS_STRICTATIME as libc::c_ulong,
        "mode=0755",
    )
    .unwrap();
    b
}

/// Each atime flag: which atimes a first and a second read change, strata vs overlayfs.
#[test]
fn atime_flags_match_overlayfs() {
    for flags in [
        "strictatime",
        "relatime",
        "noatime",
        "strictatime,nodiratime",
        "relatime,lazytime",
    ] {
        let dir = TempDir::new("atime");
        let base = base_dir(&dir);
        let mut seen = Vec::new();
        for strata in [false, true] {
            let b = Branches::new(&base, if strata { "s" } else { "o" }, strata);
            b.mount(flags);
            let first = b.access_changes();
            let second = b.access_changes();
            b.unmount();
            seen.push((first, second));
        }
        assert_eq!(
            seen[1], seen[0],
            "-o {flags}: atime changes ({WATCHED:?}) on a first and second read: strata vs overlayfs"
        );
        if flags == "strictatime" {
            // The oracle itself must see a change, or the comparison proves nothing.
            assert_eq!(
                seen[0].1,
                vec![false, true, false, true],
                "overlayfs strictatime"
            );
        }
    }
}

/// `remount` changes the atime flags a running mount applies.
#[test]
fn atime_flags_change_on_remount() {
    let dir = TempDir::new("atime-remount");
    let base = base_dir(&dir);
    let mut seen = Vec::new();
    for strata in [false, true] {
        let b = Branches::new(&base, if strata { "s" } else { "o" }, strata);
        b.mount("noatime");
        let quiet = b.access_changes();
        b.remount("strictatime");
        let strict = b.access_changes();
        b.remount("noatime");
        let quiet_again = b.access_changes();
        b.unmount();
        seen.push((quiet, strict, quiet_again));
    }
    assert_eq!(
        seen[1], seen[0],
        "noatime -> strictatime -> noatime: strata vs overlayfs"
    );
    assert_eq!(
        seen[0].1,
        vec![false, true, false, true],
        "overlayfs strictatime"
    );
}

/// (mtime changed, ctime changed) after msync, then after munmap and close, for a write of
/// one byte through a shared writable mapping.
fn mmap_write_changes(m: &Mounted, rel: &str) -> (bool, bool, bool, bool) {
    let p = m.p(rel);
    let fd = sys::open(&p, libc::O_RDWR, 0).unwrap();
    let st0 = sys::fstat(&fd).unwrap();
    std::thread::sleep(TICK);
    let times = |st: &libc::stat| (st.st_mtime, st.st_mtime_nsec, st.st_ctime, st.st_ctime_nsec);
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh shared mapping of 4 KiB of an open file at least that long; it is
    // written only inside its bounds and unmapped below.
    let st1 = unsafe {
        let a = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        );
        assert_ne!(a, libc::MAP_FAILED, "mmap {rel}");
        *(a as *mut u8).add(10) ^= 0xff;
        assert_eq!(libc::msync(a, 4096, libc::MS_SYNC), 0, "msync {rel}");
        let st1 = sys::stat(&p).unwrap();
        libc::munmap(a, 4096);
        st1
    };
    drop(fd);
    let st2 = sys::stat(&p).unwrap();
    let (t0, t1, t2) = (times(&st0), times(&st1), times(&st2));
    (
        (t0.0, t0.1) != (t1.0, t1.1),
        (t0.2, t0.3) != (t1.2, t1.3),
        (t0.0, t0.1) != (t2.0, t2.1),
        (t0.2, t0.3) != (t2.2, t2.3),
    )
}

/// A write through a shared writable mmap shows a new mtime and ctime after msync, on a
/// lower file (copied up at open), a big lower file (a delta) and an upper file.
#[test]
fn mmap_write_updates_mtime_and_ctime() {
    let pair = Fixture::new()
        .lower(
            Layer::new()
                .file("small", vec![1u8; 8192])
                .file("big", vec![2u8; 3 << 20]),
        )
        .upper(Layer::new().file("up", vec![3u8; 8192]))
        .pair();
    for (rel, again) in [
        ("small", false),
        ("big", false),
        ("up", false),
        ("small", true),
    ] {
        let what = format!(
            "mmap write into {rel}{}",
            if again { " (again)" } else { "" }
        );
        let o = pair.both_val(&what, |m| mmap_write_changes(m, rel));
        assert_eq!(o, (true, true, true, true), "{what}: overlayfs itself");
    }
}

/// A union for the remount tests (any base filesystem).
struct Plain {
    dir: TempDir,
    mnt: PathBuf,
}

impl Plain {
    fn new(upper: bool) -> Plain {
        let dir = TempDir::new("remount");
        for d in ["l", "u", "w", "m"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("l/f"), "lower\n").unwrap();
        std::fs::write(dir.join("l/run.sh"), "#!/bin/sh\necho ran\n").unwrap();
        sys::chmod(&dir.join("l/run.sh"), 0o755).unwrap();
        let mnt = dir.join("m");
        let p = Plain { dir, mnt };
        let mut opts = format!("lowerdir={}", p.dir.join("l").display());
        if upper {
            opts.push_str(&format!(
                ",upperdir={},workdir={}",
                p.dir.join("u").display(),
                p.dir.join("w").display()
            ));
        }
        let (ok, log) = run_strata(
            &["mount", "-o", &opts, &p.mnt.display().to_string()],
            &p.dir.join("log"),
        );
        assert!(ok, "{log}");
        p
    }

    fn strata(&self, opts: &str) -> (bool, String) {
        let out = Command::new(strata_tests::strata_bin())
            .args(["mount", "-o", opts, &self.mnt.display().to_string()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The per-mount and superblock options in mountinfo.
    fn shown(&self) -> String {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let m = self.mnt.display().to_string();
        let line = info
            .lines()
            .rfind(|l| l.split(' ').nth(4) == Some(m.as_str()))
            .unwrap_or_else(|| panic!("{m} not in mountinfo"))
            .to_string();
        assert!(line.contains(" - fuse.strata "), "{line}");
        line
    }

    fn write_errno(&self, rel: &str) -> i32 {
        match std::fs::write(self.mnt.join(rel), "new\n") {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(-1),
        }
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        let pids = pids_with_arg(&self.mnt.display().to_string());
        let _ = unmount_path(&self.mnt);
        reap_daemons(&pids);
    }
}

fn per_mount_flags(line: &str) -> Vec<String> {
    line.split(' ')
        .nth(5)
        .unwrap_or("")
        .split(',')
        .map(str::to_string)
        .collect()
}

/// `strata mount -o remount,ro|rw|nosuid,...` changes a live mount.
#[test]
fn remount_from_strata_mount() {
    let p = Plain::new(true);
    assert_eq!(p.write_errno("f"), 0);
    let (ok, err) = p.strata("remount,ro");
    assert!(ok, "remount,ro: {err}");
    assert!(per_mount_flags(&p.shown()).contains(&"ro".to_string()));
    assert_eq!(
        p.write_errno("f"),
        libc::EROFS,
        "write into a file after remount,ro"
    );
    assert_eq!(p.write_errno("new"), libc::EROFS, "create after remount,ro");
    assert_eq!(std::fs::read_to_string(p.mnt.join("f")).unwrap(), "new\n");
    let (ok, err) = p.strata("remount,rw");
    assert!(ok, "remount,rw: {err}");
    assert_eq!(p.write_errno("new"), 0, "create after remount,rw");
    let run = || {
        Command::new(p.mnt.join("run.sh"))
            .output()
            .map(|o| o.status.success())
            .map_err(|e| e.raw_os_error())
    };
    assert_eq!(run(), Ok(true));
    let (ok, err) = p.strata("remount,nosuid,nodev,noexec,noatime");
    assert!(ok, "remount,nosuid,nodev,noexec,noatime: {err}");
    let f = per_mount_flags(&p.shown());
    for w in ["rw", "nosuid", "nodev", "noexec", "noatime"] {
        assert!(f.contains(&w.to_string()), "{w} missing in {f:?}");
    }
    assert_eq!(run(), Err(Some(libc::EACCES)), "exec after remount,noexec");
    let (ok, err) = p.strata("remount,exec,suid,dev,relatime");
    assert!(ok, "{err}");
    let f = per_mount_flags(&p.shown());
    assert!(
        !f.iter()
            .any(|w| ["nosuid", "nodev", "noexec", "noatime"].contains(&w.as_str())),
        "{f:?}"
    );
    assert_eq!(run(), Ok(true));
    let (ok, err) = p.strata("remount,bogus");
    assert!(!ok && err.contains("bogus"), "{err}");
}

/// A union without an upper is read-only for good: remount,rw is refused with a reason.
#[test]
fn remount_rw_without_upper_is_refused() {
    let p = Plain::new(false);
    let (ok, err) = p.strata("remount,rw");
    assert!(!ok, "remount,rw of a union without upperdir succeeded");
    assert!(err.contains("no upperdir"), "{err}");
    assert!(per_mount_flags(&p.shown()).contains(&"ro".to_string()));
    assert_eq!(p.write_errno("new"), libc::EROFS);
}

/// mount(8): `mount -t fuse.strata`, `mount -o remount,... MNT` without `-t`, and an fstab
/// line (`mount -T FILE`). mount.fuse3 runs `strata` from a reset PATH, so strata is put
/// in /usr/local/sbin inside a private mount namespace (a tmpfs there): the host's
/// directories and /etc/fstab stay as they are.
#[test]
fn remount_through_mount8_and_fstab() {
    let dir = TempDir::new("mount8");
    for d in ["l", "u", "w", "m"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("l/f"), "lower\n").unwrap();
    let (l, u, w, m) = (dir.join("l"), dir.join("u"), dir.join("w"), dir.join("m"));
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        l.display(),
        u.display(),
        w.display()
    );
    let fstab = dir.join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "strata {} fuse.strata {opts},nodev,nosuid,noexec,noatime 0 0\n",
            m.display()
        ),
    )
    .unwrap();
    let script = format!(
        r#"
M='{m}'
trap 'umount -l "$M" 2>/dev/null' EXIT
mount -t tmpfs tmpfs /usr/local/sbin && cp '{bin}' /usr/local/sbin/strata || exit 99
flags() {{ awk -v m="$M" '$5 == m {{ f = $6 }} END {{ print f }}' /proc/self/mountinfo; }}
w() {{ if sh -c "echo x > $M/$1" 2>/dev/null; then echo "$2 write ok"; else echo "$2 write failed"; fi; }}
mount -t fuse.strata none "$M" -o '{opts},nosuid'; echo "mount rc=$?"
echo "mount flags $(flags)"
w a mounted
mount -o remount,ro "$M"; echo "ro rc=$?"
echo "ro flags $(flags)"
w b ro
cat "$M/a" >/dev/null && echo "ro read ok"
mount -o remount,rw "$M"; echo "rw rc=$?"
w c rw
mount -o remount,noexec,nodev "$M"; echo "noexec rc=$?"
echo "noexec flags $(flags)"
umount "$M"; echo "umount rc=$?"
mount -T '{fstab}' "$M"; echo "fstab rc=$?"
echo "fstab flags $(flags)"
mount -T '{fstab}' -o remount,ro "$M"; echo "fstab ro rc=$?"
w d fstab-ro
mount -T '{fstab}' -o remount,rw "$M"; echo "fstab rw rc=$?"
echo "fstab-rw flags $(flags)"
w e fstab-rw
umount "$M"; echo "fstab umount rc=$?"
"#,
        m = m.display(),
        bin = strata_tests::strata_bin().display(),
        fstab = fstab.display(),
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    reap_daemons(&pids_with_arg(&m.display().to_string()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    let line = |key: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no '{key}' line in:\n{all}"))
            .to_string()
    };
    let has = |key: &str, words: &[&str]| {
        let l = line(key);
        let f: Vec<&str> = l.rsplit(' ').next().unwrap_or("").split(',').collect();
        for w in words {
            assert!(f.contains(w), "'{key}': {w} missing in {l}\n{all}");
        }
    };
    for k in [
        "mount rc=0",
        "ro rc=0",
        "rw rc=0",
        "noexec rc=0",
        "umount rc=0",
    ] {
        line(k);
    }
    has("mount flags", &["rw", "nosuid"]);
    line("mounted write ok");
    has("ro flags", &["ro", "nosuid"]);
    line("ro write failed");
    line("ro read ok");
    line("rw write ok");
    has("noexec flags", &["rw", "nosuid", "nodev", "noexec"]);
    for k in [
        "fstab rc=0",
        "fstab ro rc=0",
        "fstab rw rc=0",
        "fstab umount rc=0",
    ] {
        line(k);
    }
    has(
        "fstab flags",
        &["rw", "nosuid", "nodev", "noexec", "noatime"],
    );
    line("fstab-ro write failed");
    has(
        "fstab-rw flags",
        &["rw", "nosuid", "nodev", "noexec", "noatime"],
    );
    line("fstab-rw write ok");
}

/// The user the unprivileged test runs as (shared with mount_unprivileged.rs).
const USER: &str = "strata-unpriv";

/// An ordinary user mounts (through fusermount3, which knows fewer flag words) with every
/// atime flag, and `noatime` keeps the upper file's atime on a strictatime base.
#[test]
fn unprivileged_mount_takes_the_atime_flags() {
    use std::os::unix::fs::PermissionsExt;
    strata_tests::users::ensure_user(USER);
    std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).unwrap();
    let dir = TempDir::new("unpriv-atime");
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let base = base_dir(&dir);
    let b = Branches::new(&base, "s", true);
    let st = Command::new("chown")
        .args(["-R", &format!("{USER}:{USER}")])
        .arg(&b.root)
        .status()
        .unwrap();
    assert!(st.success());
    let r = |p: &str| b.root.join(p).display().to_string();
    let script = format!(
        "{bin} mount -o lowerdir={l},upperdir={u},workdir={w},strictatime,nodiratime,lazytime,silent,noexec,noatime {m} || exit 1
         a0=$(stat -c %X.%x {m}/uf); sleep 0.05; cat {m}/uf >/dev/null; a1=$(stat -c %X.%x {m}/uf)
         fusermount3 -u {m}
         [ \"$a0\" = \"$a1\" ] && echo unchanged || echo changed",
        bin = strata_tests::strata_bin().display(),
        l = r("l"),
        u = r("u"),
        w = r("w"),
        m = b.mnt.display()
    );
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            USER,
            "--regid",
            USER,
            "--init-groups",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .current_dir(&b.root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    reap_daemons(&pids_with_arg(&b.mnt.display().to_string()));
    assert!(
        out.status.success(),
        "unprivileged mount with atime flags: {text}"
    );
    assert!(text.contains("unchanged"), "noatime as a user: {text}");
}
