//! Mounting strata (through its binary) and the kernel's overlayfs on identical branches.

use crate::layer::{Flavor, Layer};
use crate::sys;
use nix::errno::Errno;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where every test puts its directories.
pub const TEST_ROOT: &str = "/tmp/strata-tests";

/// The strata binary: `$STRATA_BIN`, else `<workspace>/target/debug/strata`.
pub fn strata_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_BIN") {
        return PathBuf::from(p);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ws = manifest.parent().unwrap_or(&manifest).to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ws.join("target"));
    target.join("debug").join("strata")
}

/// True when the "strata" under test is really fuse-overlayfs (harness validation runs).
pub fn is_fuse_overlayfs() -> bool {
    strata_bin()
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("fuse-overlayfs"))
}

/// A unique, empty directory under [`TEST_ROOT`], removed on drop (unless
/// `STRATA_KEEP` is set) once nothing is mounted beneath it.
pub struct TempDir {
    pub path: PathBuf,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name for the current test, from the test thread's name.
pub fn test_name() -> String {
    let t = std::thread::current();
    let name = t.name().unwrap_or("test");
    let name = name.rsplit("::").next().unwrap_or(name);
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect()
}

impl TempDir {
    pub fn new(label: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = PathBuf::from(TEST_ROOT).join(format!(
            "{}-{}-{}-{}",
            test_name(),
            label,
            std::process::id(),
            n
        ));
        if path.exists() {
            let _ = std::fs::remove_dir_all(&path);
        }
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("STRATA_KEEP").is_some() {
            eprintln!("keeping {}", self.path.display());
            return;
        }
        // Never recurse into something still mounted: detach what is left first.
        for m in mounts_under(&self.path) {
            let _ = sys::umount2(Path::new(&m), libc::MNT_DETACH);
        }
        if mounts_under(&self.path).is_empty() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// `STRATA_SELF_CHECK=1`: the "strata" side of every mount is kernel overlayfs too, so
/// any difference a differential test reports is the harness's own fault.
pub fn self_check() -> bool {
    std::env::var_os("STRATA_SELF_CHECK").is_some()
}

/// Which implementation serves a mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Strata,
    Overlay,
}

/// Kernel overlayfs options tried in order; the first the kernel accepts is used.
pub const OVERLAY_OPTION_SETS: &[&str] = &[
    "redirect_dir=on,index=on,metacopy=on",
    "redirect_dir=on,index=on",
    "redirect_dir=on",
    "",
];

/// Run strata's mount_program form and wait for it to exit (it daemonizes).
/// Returns (exit status success, combined log text).
pub fn run_strata(args: &[&str], log: &Path) -> (bool, String) {
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
    let logf2 = logf.try_clone().expect("dup log fd");
    let mut child = Command::new(strata_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(logf)
        .stderr(logf2)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", strata_bin().display()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} {:?} did not exit within 60 s",
                    strata_bin().display(),
                    args
                );
            }
        }
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    (status.success(), text)
}

/// One mounted union (strata or kernel overlayfs) with its own branch directories.
pub struct Mounted {
    pub kind: Kind,
    pub dir: TempDir,
    /// Lower branches, top first.
    pub lowers: Vec<PathBuf>,
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
    pub mnt: PathBuf,
    /// The option string the mount used (overlayfs: which set the kernel accepted).
    pub options: String,
    daemons: Vec<i32>,
    mounted: bool,
}

impl Mounted {
    /// Build the branches for `kind` and mount them.
    pub fn new(kind: Kind, lowers: &[Layer], upper: Option<&Layer>, writable: bool) -> Self {
        let label = match kind {
            Kind::Strata => "strata",
            Kind::Overlay => "ovl",
        };
        let dir = TempDir::new(label);
        let flavor = match kind {
            Kind::Strata if !self_check() => Flavor::Strata,
            _ => Flavor::Kernel,
        };
        let mut lower_dirs = Vec::new();
        for (i, l) in lowers.iter().enumerate() {
            let p = dir.join(&format!("l{i}"));
            std::fs::create_dir_all(&p).expect("mkdir lower");
            l.build(&p, flavor);
            lower_dirs.push(p);
        }
        let (upper_dir, work_dir) = if writable {
            let u = dir.join("upper");
            let w = dir.join("work");
            std::fs::create_dir_all(&u).expect("mkdir upper");
            std::fs::create_dir_all(&w).expect("mkdir work");
            if let Some(l) = upper {
                l.build(&u, flavor);
            }
            (Some(u), Some(w))
        } else {
            (None, None)
        };
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).expect("mkdir mnt");
        let mut m = Mounted {
            kind,
            dir,
            lowers: lower_dirs,
            upper: upper_dir,
            work: work_dir,
            mnt,
            options: String::new(),
            daemons: Vec::new(),
            mounted: false,
        };
        m.mount();
        m
    }

    /// A short label for messages.
    pub fn label(&self) -> &'static str {
        match self.kind {
            Kind::Strata => "strata",
            Kind::Overlay => "overlayfs",
        }
    }

    /// The path of `rel` inside the mount ("" is the mount root).
    pub fn p(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.mnt.clone()
        } else {
            self.mnt.join(rel)
        }
    }

    /// The `lowerdir=..,upperdir=..,workdir=..` option string for these branches.
    pub fn branch_options(&self) -> String {
        let lowers: Vec<String> = self
            .lowers
            .iter()
            .map(|p| p.to_string_lossy().replace(':', "\\:"))
            .collect();
        let mut o = format!("lowerdir={}", lowers.join(":"));
        if let (Some(u), Some(w)) = (&self.upper, &self.work) {
            o.push_str(&format!(
                ",upperdir={},workdir={}",
                u.display(),
                w.display()
            ));
        }
        o
    }

    pub fn is_mounted(&self) -> bool {
        self.mounted
    }

    /// Mount (again) on the same branches.
    pub fn mount(&mut self) {
        assert!(!self.mounted, "{}: already mounted", self.label());
        match self.kind {
            Kind::Strata if !self_check() => self.mount_strata(),
            _ => self.mount_overlay(),
        }
        self.mounted = true;
    }

    fn mount_strata(&mut self) {
        let opts = self.branch_options();
        let mnt = self.mnt.to_string_lossy().to_string();
        let log = self.dir.join("strata.log");
        let (ok, text) = run_strata(&["-o", &opts, &mnt], &log);
        assert!(
            ok,
            "{} -o {opts} {mnt} failed:\n{text}",
            strata_bin().display()
        );
        assert!(
            is_mounted(&self.mnt),
            "{} exited 0 but {mnt} is not mounted (it must exit only once the mount is live)\n{text}",
            strata_bin().display()
        );
        self.options = opts;
        self.daemons = pids_with_arg(&mnt);
    }

    fn mount_overlay(&mut self) {
        let base = self.branch_options();
        let candidates: Vec<String> = if self.options.is_empty() {
            OVERLAY_OPTION_SETS
                .iter()
                .map(|extra| {
                    if extra.is_empty() {
                        base.clone()
                    } else {
                        format!("{base},{extra}")
                    }
                })
                .collect()
        } else {
            vec![self.options.clone()]
        };
        let mut errs = Vec::new();
        for opts in &candidates {
            // Right after an unmount the previous superblock may still hold the
            // upper/work "in use" marks for a moment (EBUSY): poll with a deadline.
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut r = sys::mount("overlay", &self.mnt, "overlay", 0, opts);
            while r == Err(Errno::EBUSY) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                r = sys::mount("overlay", &self.mnt, "overlay", 0, opts);
            }
            match r {
                Ok(()) => {
                    if opts != &candidates[0] {
                        eprintln!("overlayfs: kernel refused richer options, mounted with {opts}");
                    }
                    self.options = opts.clone();
                    return;
                }
                Err(e) => errs.push(format!("{opts}: {e}")),
            }
        }
        panic!(
            "mount -t overlay failed with every option set:\n{}",
            errs.join("\n")
        );
    }

    /// Unmount; the mount can be mounted again with [`Mounted::mount`].
    pub fn unmount(&mut self) {
        if !self.mounted {
            return;
        }
        if let Err(e) = unmount_path(&self.mnt) {
            panic!("{}: umount {}: {e}", self.label(), self.mnt.display());
        }
        self.mounted = false;
        let d = std::mem::take(&mut self.daemons);
        reap_daemons(&d);
    }

    /// Unmount and mount again on the same branches.
    pub fn remount(&mut self) {
        self.unmount();
        self.mount();
    }

    /// The daemon's log (strata only).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("strata.log")).unwrap_or_default()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            if unmount_path(&self.mnt).is_err() {
                let _ = sys::umount2(&self.mnt, libc::MNT_DETACH);
            }
            self.mounted = false;
            let d = std::mem::take(&mut self.daemons);
            reap_daemons(&d);
        }
        // A daemon we did not see at mount time (e.g. a forked helper) still
        // holding our mount point as an argument:
        let left = pids_with_arg(&self.mnt.to_string_lossy());
        if !left.is_empty() {
            reap_daemons(&left);
        }
    }
}

/// Branch layers for a pair of mounts.
#[derive(Clone, Default)]
pub struct Fixture {
    /// Lower layers, top first.
    pub lowers: Vec<Layer>,
    /// Content planted in the upper dir before the first mount.
    pub upper: Option<Layer>,
}

impl Fixture {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a lower layer below the ones already added (the first is the top).
    pub fn lower(mut self, l: Layer) -> Self {
        self.lowers.push(l);
        self
    }

    /// Plant content in the upper dir before mounting.
    pub fn upper(mut self, l: Layer) -> Self {
        self.upper = Some(l);
        self
    }

    fn layers(&self) -> Vec<Layer> {
        if self.lowers.is_empty() {
            vec![Layer::new()]
        } else {
            self.lowers.clone()
        }
    }

    /// strata, writable.
    pub fn strata(&self) -> Mounted {
        Mounted::new(Kind::Strata, &self.layers(), self.upper.as_ref(), true)
    }

    /// strata, read-only (no upper).
    pub fn strata_ro(&self) -> Mounted {
        Mounted::new(Kind::Strata, &self.layers(), None, false)
    }

    /// Kernel overlayfs, writable.
    pub fn overlay(&self) -> Mounted {
        Mounted::new(Kind::Overlay, &self.layers(), self.upper.as_ref(), true)
    }

    pub fn overlay_ro(&self) -> Mounted {
        Mounted::new(Kind::Overlay, &self.layers(), None, false)
    }

    /// Both, writable, on identical branches.
    pub fn pair(&self) -> Pair {
        Pair {
            o: self.overlay(),
            s: self.strata(),
        }
    }

    /// Both, read-only.
    pub fn pair_ro(&self) -> Pair {
        Pair {
            o: self.overlay_ro(),
            s: self.strata_ro(),
        }
    }
}

/// `STRATA_SOFT_DIFF=1`: report differences on stderr (prefixed `DIFF`) and go on,
/// to list every divergence of an implementation in one run (harness validation).
pub fn soft_diff() -> bool {
    std::env::var_os("STRATA_SOFT_DIFF").is_some()
}

/// A strata mount and a kernel overlayfs mount of identical branches.
pub struct Pair {
    pub o: Mounted,
    pub s: Mounted,
}

impl Pair {
    /// Run `f` on overlayfs, then on strata, and assert the outcomes are equal.
    #[track_caller]
    pub fn both<T: PartialEq + Debug>(&self, what: &str, f: impl Fn(&Mounted) -> T) {
        self.both_val(what, f);
    }

    /// [`Pair::both`], returning strata's outcome.
    #[track_caller]
    pub fn both_val<T: PartialEq + Debug>(&self, what: &str, f: impl Fn(&Mounted) -> T) -> T {
        let o = f(&self.o);
        let s = f(&self.s);
        if o != s {
            let msg = format!(
                "{what}: strata differs from overlayfs ({})\n  overlayfs: {o:?}\n  strata:    {s:?}",
                self.o.options
            );
            if soft_diff() {
                eprintln!("DIFF {}: {msg}", crate::mount::test_name());
            } else {
                panic!("{msg}");
            }
        }
        s
    }

    /// Unmount and mount both again on the same branches.
    pub fn remount(&mut self) {
        self.o.remount();
        self.s.remount();
    }

    /// Walk both merged trees and assert they are the same.
    #[track_caller]
    pub fn same_tree(&self, what: &str) {
        let o = self.o.tree();
        let s = self.s.tree();
        let diff = o.diff(&s);
        if !diff.is_empty() {
            let msg = format!(
                "{what}: merged trees differ (overlayfs -> strata):\n{}",
                diff.join("\n")
            );
            if soft_diff() {
                eprintln!("DIFF {}: {msg}", crate::mount::test_name());
            } else {
                panic!("{msg}");
            }
        }
    }
}

mod host;
pub use host::*;
