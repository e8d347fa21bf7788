//! fuse-overlayfs as an oracle: the same lower tree mounted by strata and by
//! /usr/bin/fuse-overlayfs with the same options, side by side.

use crate::mount::{is_mounted, pids_with_arg, reap_daemons, strata_bin, unmount_path, TempDir};
use crate::sys;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's fuse-overlayfs (1.10 here).
pub const FUSE_OVERLAYFS: &str = "/usr/bin/fuse-overlayfs";

/// Which program serves a [`PeerMount`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Strata,
    FuseOverlayfs,
}

impl Peer {
    /// Both, strata first.
    pub const BOTH: [Peer; 2] = [Peer::Strata, Peer::FuseOverlayfs];

    fn bin(self) -> PathBuf {
        match self {
            Peer::Strata => strata_bin(),
            Peer::FuseOverlayfs => PathBuf::from(FUSE_OVERLAYFS),
        }
    }

    /// A short label for messages.
    pub fn label(self) -> &'static str {
        match self {
            Peer::Strata => "strata",
            Peer::FuseOverlayfs => "fuse-overlayfs",
        }
    }
}

/// One lower, an upper and a workdir, mounted by `peer` with extra options; unmounted
/// (daemon reaped) on drop.
pub struct PeerMount {
    pub peer: Peer,
    pub dir: TempDir,
    pub lower: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub mnt: PathBuf,
    pub extra: String,
    mounted: bool,
}

impl PeerMount {
    /// Directories only; fill `lower` (or `upper`) first, then [`PeerMount::mount`].
    pub fn new(peer: Peer, label: &str, extra: &str) -> PeerMount {
        let dir = TempDir::new(&format!("{label}-{}", peer.label()));
        let [lower, upper, work, mnt] = ["lower", "upper", "work", "mnt"].map(|d| dir.join(d));
        for d in [&lower, &upper, &work, &mnt] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        PeerMount {
            peer,
            dir,
            lower,
            upper,
            work,
            mnt,
            extra: extra.to_string(),
            mounted: false,
        }
    }

    /// The `-o` option string.
    pub fn options(&self) -> String {
        let mut o = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower.display(),
            self.upper.display(),
            self.work.display()
        );
        if !self.extra.is_empty() {
            o.push(',');
            o.push_str(&self.extra);
        }
        o
    }

    /// Mount; panics with the program's output when it fails.
    pub fn mount(&mut self) {
        if let Err(e) = self.try_mount() {
            panic!("{e}");
        }
    }

    /// Mount; Err(program output) when the program refuses.
    pub fn try_mount(&mut self) -> Result<(), String> {
        assert!(!self.mounted, "already mounted");
        let opts = self.options();
        let (ok, text) = run_bounded(
            Command::new(self.peer.bin())
                .arg("-o")
                .arg(&opts)
                .arg(&self.mnt),
            &self.dir.join("mount.log"),
        );
        if !ok {
            return Err(format!("{} -o {opts} failed:\n{text}", self.peer.label()));
        }
        if !is_mounted(&self.mnt) {
            return Err(format!(
                "{} exited 0 but nothing is mounted\n{text}",
                self.peer.label()
            ));
        }
        self.mounted = true;
        Ok(())
    }

    pub fn unmount(&mut self) {
        if !self.mounted {
            return;
        }
        let pids = pids_with_arg(&self.mnt.to_string_lossy());
        if let Err(e) = unmount_path(&self.mnt) {
            panic!("umount {}: {e}", self.mnt.display());
        }
        self.mounted = false;
        reap_daemons(&pids);
    }

    /// A path inside the mount.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }
}

impl Drop for PeerMount {
    fn drop(&mut self) {
        if self.mounted {
            let pids = pids_with_arg(&self.mnt.to_string_lossy());
            if unmount_path(&self.mnt).is_err() {
                let _ = sys::umount2(&self.mnt, libc::MNT_DETACH);
            }
            reap_daemons(&pids);
        }
    }
}

/// Run a command that daemonizes, with a 60 s bound: (success, its output). The output
/// goes to a file: a daemon may keep its stderr open, a pipe would never reach EOF.
pub fn run_bounded(cmd: &mut Command, log: &Path) -> (bool, String) {
    let f = std::fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
    let f2 = f.try_clone().unwrap_or_else(|e| panic!("dup: {e}"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(f2)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{cmd:?} did not exit within 60 s");
            }
        }
    };
    (
        status.success(),
        std::fs::read_to_string(log).unwrap_or_default(),
    )
}

/// (uid, gid) of `p` without following a symlink.
pub fn owner(p: &Path) -> (u32, u32) {
    let st = sys::lstat(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
    (st.st_uid, st.st_gid)
}
