//! A scratch ext4 file system on a loop device, the oracle for what ext4 does (inode
//! flags, FIEMAP, O_TMPFILE), and strata mounted over branches that live on it.

use crate::mount::{pids_with_arg, reap_daemons, run_strata, unmount_path, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A loop-mounted ext4 image, unmounted on drop.
pub struct Ext4 {
    pub dir: TempDir,
    /// Where the image is mounted.
    pub root: PathBuf,
}

impl Ext4 {
    /// A fresh 64 MiB ext4 file system.
    pub fn new() -> Ext4 {
        let dir = TempDir::new("ext4");
        let img = dir.join("ext4.img");
        let f = std::fs::File::create(&img).expect("create image");
        f.set_len(64 << 20).expect("size image");
        drop(f);
        let out = Command::new("mkfs.ext4")
            // 4 KiB blocks, as strata's delta blocks: extents compare one to one.
            .args(["-q", "-F", "-b", "4096"])
            .arg(&img)
            .output()
            .expect("run mkfs.ext4");
        assert!(out.status.success(), "mkfs.ext4: {out:?}");
        let root = dir.join("fs");
        std::fs::create_dir_all(&root).expect("mkdir fs");
        let out = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&root)
            .output()
            .expect("run mount");
        assert!(out.status.success(), "mount -o loop: {out:?}");
        // Unprivileged users of the tests must reach what is inside.
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod fs");
        Ext4 { dir, root }
    }

    /// A directory `name` on the ext4 file system.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let p = self.root.join(name);
        std::fs::create_dir_all(&p).expect("mkdir on ext4");
        p
    }
}

impl Default for Ext4 {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        if unmount_path(&self.root).is_err() {
            let _ = crate::sys::umount2(&self.root, libc::MNT_DETACH);
        }
    }
}

/// strata mounted with lowerdir/upperdir/workdir on an [`Ext4`], unmounted on drop.
pub struct StrataOn {
    pub lower: PathBuf,
    pub upper: PathBuf,
    pub mnt: PathBuf,
    pub log: PathBuf,
}

impl StrataOn {
    /// Mount strata on `ext4`/`name`/{l,u,w}; `lower` fills the lower branch first;
    /// `extra` options are appended (e.g. `passthrough=0`, `trace=FILE`).
    pub fn new(ext4: &Ext4, name: &str, extra: &str, lower: impl FnOnce(&Path)) -> StrataOn {
        let base = ext4.mkdir(name);
        let (l, u, w, mnt) = (
            base.join("l"),
            base.join("u"),
            base.join("w"),
            base.join("mnt"),
        );
        for d in [&l, &u, &w, &mnt] {
            std::fs::create_dir_all(d).expect("mkdir branch");
        }
        lower(&l);
        let mut opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            l.display(),
            u.display(),
            w.display()
        );
        if !extra.is_empty() {
            opts.push(',');
            opts.push_str(extra);
        }
        let log = base.join("strata.log");
        let m = mnt.to_string_lossy().to_string();
        let (ok, text) = run_strata(&["-o", &opts, &m], &log);
        assert!(ok, "strata -o {opts} {m}: {text}");
        StrataOn {
            lower: l,
            upper: u,
            mnt,
            log,
        }
    }

    /// Unmount (idempotent), waiting for the daemon to exit.
    pub fn unmount(&self) {
        let pids = pids_with_arg(&self.mnt.to_string_lossy());
        let _ = unmount_path(&self.mnt);
        reap_daemons(&pids);
    }
}

impl Drop for StrataOn {
    fn drop(&mut self) {
        self.unmount();
    }
}
