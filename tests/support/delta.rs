//! Helpers for the block-level delta tests: a strata mount with extra mount options
//! (`delta_threshold=`, `delta_block=`, `compact_ratio=`, `nodelta`) over lower files
//! written directly, SIGKILL of its daemon, `strata fsck`, the meta xattr of an upper
//! file, and deterministic file contents.

use crate::mount::{
    is_mounted, pids_with_arg, reap_daemons, run_strata, strata_bin, unmount_path, TempDir,
};
use crate::sys;
use nix::errno::Errno;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The meta xattr strata writes as root.
pub const META_XATTR: &str = "trusted.strata.meta";

/// A strata mount of one lower branch with extra options; unmounted (and its daemon
/// reaped) on drop, its directory removed with it.
pub struct DeltaMount {
    pub dir: TempDir,
    pub lower: PathBuf,
    /// A second lower branch below `lower` (empty unless a test fills it).
    pub lower2: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub mnt: PathBuf,
    /// Extra options appended after the branch options (may be empty).
    pub extra: String,
    mounted: bool,
    daemons: Vec<i32>,
}

impl DeltaMount {
    /// Directories for a mount (nothing mounted yet): fill `lower` first, then [`mount`].
    ///
    /// [`mount`]: DeltaMount::mount
    pub fn new(label: &str, extra: &str) -> DeltaMount {
        let dir = TempDir::new(label);
        let lower = dir.join("lower");
        let lower2 = dir.join("lower2");
        let upper = dir.join("upper");
        let work = dir.join("work");
        let mnt = dir.join("mnt");
        for d in [&lower, &lower2, &upper, &work, &mnt] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        DeltaMount {
            dir,
            lower,
            lower2,
            upper,
            work,
            mnt,
            extra: extra.to_string(),
            mounted: false,
            daemons: Vec::new(),
        }
    }

    /// The full `-o` option string.
    pub fn options(&self) -> String {
        let mut o = format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            self.lower.display(),
            self.lower2.display(),
            self.upper.display(),
            self.work.display()
        );
        if !self.extra.is_empty() {
            o.push(',');
            o.push_str(&self.extra);
        }
        o
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("strata.log")
    }

    /// The daemon's log (stdout/stderr of every mount so far).
    pub fn log(&self) -> String {
        let mut s = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(self.work.join("strata.log")).unwrap_or_default());
        s
    }

    pub fn mount(&mut self) {
        assert!(!self.mounted, "already mounted");
        let opts = self.options();
        let mnt = self.mnt.to_string_lossy().to_string();
        let (ok, text) = run_strata(&["-o", &opts, &mnt], &self.log_path());
        assert!(
            ok,
            "{} -o {opts} {mnt} failed:\n{text}",
            strata_bin().display()
        );
        assert!(
            is_mounted(&self.mnt),
            "strata exited 0 but {mnt} is not mounted\n{text}"
        );
        self.daemons = pids_with_arg(&mnt);
        self.mounted = true;
    }

    pub fn unmount(&mut self) {
        if !self.mounted {
            return;
        }
        if let Err(e) = unmount_path(&self.mnt) {
            panic!("umount {}: {e}", self.mnt.display());
        }
        self.mounted = false;
        let d = std::mem::take(&mut self.daemons);
        reap_daemons(&d);
    }

    pub fn remount(&mut self) {
        self.unmount();
        self.mount();
    }

    pub fn is_mounted(&self) -> bool {
        self.mounted
    }

    /// The daemon pids serving this mount (from /proc/*/cmdline naming the mount point).
    pub fn daemon_pids(&self) -> Vec<i32> {
        pids_with_arg(&self.mnt.to_string_lossy())
    }

    /// SIGKILL the daemon, then detach the dead mount (`umount -l`) and wait for the
    /// process to be gone. The mount can then be mounted again.
    pub fn kill_daemon(&mut self) {
        let pids = self.daemon_pids();
        assert!(
            !pids.is_empty(),
            "no daemon found for {}",
            self.mnt.display()
        );
        for p in &pids {
            let _ = sys::kill(*p, libc::SIGKILL);
        }
        self.lazy_unmount();
        reap_daemons(&pids);
        self.daemons.clear();
    }

    /// `umount -l` of the mount point.
    pub fn lazy_unmount(&mut self) {
        match sys::umount2(&self.mnt, libc::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => panic!("umount -l {}: {e}", self.mnt.display()),
        }
        self.mounted = false;
    }

    /// A path inside the mount.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// `strata fsck UPPER --lowerdir LOWER:LOWER2 [--repair]`: (exit success, stdout+stderr).
    pub fn fsck(&self, repair: bool) -> (bool, String) {
        fsck(&self.upper, &[&self.lower, &self.lower2], repair)
    }

    /// The meta xattr of upper file `rel`, as text (None when absent).
    pub fn meta(&self, rel: &str) -> Option<String> {
        meta_of(&self.upper.join(rel))
    }

    /// `strata fs stats --json` of the mount.
    pub fn stats(&self) -> serde_json::Value {
        let out = Command::new(strata_bin())
            .args(["fs", "stats"])
            .arg("--json")
            .arg(&self.mnt)
            .output()
            .unwrap_or_else(|e| panic!("run {} stats: {e}", strata_bin().display()));
        assert!(
            out.status.success(),
            "strata fs stats {}: {}",
            self.mnt.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("strata fs stats: bad JSON ({e})"))
    }

    /// A background compaction counter of `strata fs stats` (`queued`, `done`, `failed`,
    /// `pending`); None when the daemon reports no such counter.
    pub fn compactions(&self, key: &str) -> Option<u64> {
        self.stats()
            .get("compactions")
            .and_then(|c| c.get(key))
            .and_then(serde_json::Value::as_u64)
    }

    /// Wait (bounded) until no background compaction is pending; false on timeout.
    pub fn wait_compactions(&self) -> bool {
        crate::mount::wait_until(std::time::Duration::from_secs(120), || {
            self.compactions("pending") == Some(0)
        })
    }

    /// The `origin` that `strata whence --json` reports for `rel` ("delta", "upper", ...).
    pub fn whence_origin(&self, rel: &str) -> String {
        let out = Command::new(strata_bin())
            .arg("whence")
            .arg("--json")
            .arg(self.p(rel))
            .output()
            .unwrap_or_else(|e| panic!("run {} whence: {e}", strata_bin().display()));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "strata whence {rel}: bad JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let w = v.as_array().and_then(|a| a.first()).unwrap_or(&v);
        w.get("origin")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    /// Bytes allocated to upper file `rel` (st_blocks * 512).
    pub fn upper_allocated(&self, rel: &str) -> u64 {
        let st =
            sys::lstat(&self.upper.join(rel)).unwrap_or_else(|e| panic!("lstat upper {rel}: {e}"));
        st.st_blocks as u64 * 512
    }
}

impl Drop for DeltaMount {
    fn drop(&mut self) {
        if self.mounted {
            if unmount_path(&self.mnt).is_err() {
                let _ = sys::umount2(&self.mnt, libc::MNT_DETACH);
            }
            self.mounted = false;
        }
        let mut left = std::mem::take(&mut self.daemons);
        left.extend(self.daemon_pids());
        if !left.is_empty() {
            reap_daemons(&left);
        }
    }
}

/// `strata fsck UPPER --lowerdir A:B [--repair]`: (exit success, stdout+stderr).
pub fn fsck(upper: &Path, lowers: &[&Path], repair: bool) -> (bool, String) {
    let mut c = Command::new(strata_bin());
    c.arg("fsck").arg(upper);
    if !lowers.is_empty() {
        let l: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        c.arg("--lowerdir").arg(l.join(":"));
    }
    if repair {
        c.arg("--repair");
    }
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("run {} fsck: {e}", strata_bin().display()));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The meta xattr of a file, as text.
pub fn meta_of(p: &Path) -> Option<String> {
    sys::lgetxattr(p, META_XATTR)
        .ok()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// The value of line `key` of a meta record.
pub fn meta_line<'a>(meta: &'a str, key: &str) -> Option<&'a str> {
    meta.lines().find_map(|l| {
        l.strip_prefix(key).and_then(|r| {
            r.strip_prefix(' ')
                .or(if r.is_empty() { Some("") } else { None })
        })
    })
}

/// The block ranges of a meta record's `blocks` line (half-open).
pub fn meta_blocks(meta: &str) -> Vec<(u64, u64)> {
    meta_line(meta, "blocks")
        .unwrap_or("")
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (a, b) = p.split_once('-').unwrap_or_else(|| panic!("bad range {p}"));
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

/// Deterministic pseudo-random bytes for `seed` (the same seed always gives the same
/// stream): fills `buf` as if it were the stream from byte `off`.
pub fn fill_pattern(seed: u64, off: u64, buf: &mut [u8]) {
    let mut i = 0usize;
    while i < buf.len() {
        let o = off + i as u64;
        let w = o / 8;
        let bytes = mix(seed ^ w.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes();
        let start = (o % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&bytes[start..start + n]);
        i += n;
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `len` bytes of the pattern for `seed` starting at `off`.
pub fn pattern(seed: u64, off: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill_pattern(seed, off, &mut v);
    v
}

/// Write a lower file of `size` bytes of pattern `seed` (directly, not through a mount).
pub fn write_lower(path: &Path, seed: u64, size: u64) -> Vec<u8> {
    let data = pattern(seed, 0, size as usize);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(path, &data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    data
}

/// The first offset where two byte strings differ (or where one ends), with context.
pub fn first_diff(want: &[u8], got: &[u8]) -> Option<String> {
    if want == got {
        return None;
    }
    let n = want.len().min(got.len());
    let i = (0..n).find(|&i| want[i] != got[i]).unwrap_or(n);
    let hex = |b: &[u8]| -> String {
        b.iter()
            .take(16)
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join("")
    };
    Some(format!(
        "lengths want {} got {}; first difference at byte {i} (4K block {}): want {} got {}",
        want.len(),
        got.len(),
        i / 4096,
        hex(&want[i.min(want.len())..]),
        hex(&got[i.min(got.len())..])
    ))
}

/// The layer a `data` line of a record at `pos` (0 = upper) names, and the path.
pub fn data_target(meta: &str, pos: usize) -> Option<(usize, String)> {
    let line = meta_line(meta, "data")?;
    let (k, path) = line.split_once(' ')?;
    let below = match k.strip_prefix('+') {
        Some(k) => k.parse::<usize>().ok()?,
        // Format 1: branch L of the mount it was written in, L+1 layers below.
        None => k.parse::<usize>().ok()? + 1,
    };
    Some((pos + below, path.to_string()))
}

/// How many files the bytes of `rel` come from, following the records down the stack
/// (`layers` top first: the upper, then the lowers).
pub fn chain_files(layers: &[PathBuf], rel: &str) -> usize {
    let (mut pos, mut path) = (0usize, rel.to_string());
    let mut files = 0;
    while let Some(dir) = layers.get(pos) {
        let p = dir.join(&path);
        if std::fs::symlink_metadata(&p).is_err() {
            pos += 1;
            continue;
        }
        files += 1;
        // A rootless union keeps its records under user.*.
        let meta = meta_of(&p).or_else(|| {
            sys::lgetxattr(&p, "user.strata.meta")
                .ok()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        });
        match meta.and_then(|m| data_target(&m, pos)) {
            Some((next, np)) => (pos, path) = (next, np),
            None => break,
        }
        assert!(files <= 64, "a chain that does not end: {rel}");
    }
    files
}
