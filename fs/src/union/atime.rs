//! Access times through a strata mount follow strata's own mount flags (`noatime`,
//! `relatime`, `strictatime`, `nodiratime`), as on kernel overlayfs.
//!
//! Who updates atime on a FUSE mount: never the kernel's FUSE code (its inodes are
//! S_NOATIME, with or without the writeback cache; it only drops its cached atime after a
//! read or readdir so the next stat asks the daemon). What a stat shows is the atime of the
//! branch entry, which the daemon's own reads of it used to update under the *branch*
//! filesystem's flags, whatever strata was mounted with, and lower entries too.
//!
//! overlayfs opens its real files with O_NOATIME and, on a read or readdir, touches the
//! atime of the upper entry only (a lower entry's atime never changes; no copy-up), first
//! under the overlay mount's flags, then under the upper mount's. strata does the same:
//! - lower files and directories are read with O_NOATIME (where the kernel allows it: root,
//!   or the owner; else as before);
//! - upper entries are read through a private, detached copy of the upper's mount
//!   (open_tree(OPEN_TREE_CLONE), as overlayfs clones its upper mount) whose atime flags
//!   are strata's, combined with the upper mount's own (the stricter limit wins, as both
//!   overlayfs checks do). The kernel then applies them on every read that reaches the
//!   branch file: the daemon's, and the kernel's own for passthrough files. `remount`
//!   changes them. Without CAP_SYS_ADMIN (no copy possible) only `noatime`/`nodiratime`
//!   are applied, by O_NOATIME; otherwise the upper mount's flags decide.

use crate::union::branch::Branch;
use nix::mount::MsFlags;
use parking_lot::Mutex;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// When reads update atime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AtimeMode {
    /// noatime.
    Never,
    /// relatime: when atime is not newer than mtime/ctime, or a day old.
    Relative,
    /// strictatime: every read.
    Strict,
}

/// A mount's atime flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtimePolicy {
    /// Files (and directories unless `nodiratime`).
    pub mode: AtimeMode,
    /// Directories never.
    pub nodiratime: bool,
}

impl AtimePolicy {
    /// From MS_* flags (neither noatime nor strictatime: relatime, the kernel's default).
    pub fn from_flags(f: MsFlags) -> AtimePolicy {
        let mode = if f.contains(MsFlags::MS_NOATIME) {
            AtimeMode::Never
        } else if f.contains(MsFlags::MS_STRICTATIME) {
            AtimeMode::Strict
        } else {
            AtimeMode::Relative
        };
        AtimePolicy {
            mode,
            nodiratime: f.contains(MsFlags::MS_NODIRATIME),
        }
    }

    /// From mount option words in order (`noatime`, `strictatime`, ...).
    pub fn from_words<S: AsRef<str>>(words: &[S]) -> AtimePolicy {
        let mut f = MsFlags::empty();
        for w in words {
            crate::config::vfs_flags::apply(&mut f, w.as_ref());
        }
        AtimePolicy::from_flags(f)
    }

    /// Both limits at once: what a read through both mounts does.
    fn and(self, o: AtimePolicy) -> AtimePolicy {
        AtimePolicy {
            mode: self.mode.min(o.mode),
            nodiratime: self.nodiratime || o.nodiratime,
        }
    }

    /// mount_setattr bits (set, clear) for this policy.
    fn attrs(self) -> (u64, u64) {
        use strata_sys::mount_attr as a;
        let mut set = match self.mode {
            AtimeMode::Never => a::NOATIME,
            AtimeMode::Relative => a::RELATIME,
            AtimeMode::Strict => a::STRICTATIME,
        };
        let mut clear = a::ATIME_MASK;
        match self.nodiratime {
            true => set |= a::NODIRATIME,
            false => clear |= a::NODIRATIME,
        }
        (set, clear)
    }
}

/// The upper branch as reads see it, with the mount's atime policy.
pub(crate) struct UpperAtime {
    /// The upper opened through a detached copy of its mount: (the mount, the branch).
    pub(crate) clone: Option<(OwnedFd, Branch)>,
    /// The upper mount's own flags.
    base: AtimePolicy,
    /// strata's flags, as mounted or last remounted.
    policy: Mutex<AtimePolicy>,
}

/// The atime policy of the mount the directory `dir` lives on.
fn base_policy(dir: &Path) -> AtimePolicy {
    use nix::sys::statvfs::FsFlags;
    let Ok(st) = nix::sys::statvfs::statvfs(dir) else {
        return AtimePolicy::from_flags(MsFlags::empty());
    };
    let f = st.flags();
    let mut m = MsFlags::empty();
    if f.contains(FsFlags::ST_NOATIME) {
        m |= MsFlags::MS_NOATIME;
    } else if !f.contains(FsFlags::ST_RELATIME) {
        m |= MsFlags::MS_STRICTATIME;
    }
    if f.contains(FsFlags::ST_NODIRATIME) {
        m |= MsFlags::MS_NODIRATIME;
    }
    AtimePolicy::from_flags(m)
}

/// A detached copy of the mount of `upper`, rooted at the same directory.
fn clone_upper(upper: &Branch) -> io::Result<(OwnedFd, Branch)> {
    let mnt = strata_sys::clone_mount(&upper.path)?;
    let by_fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&mnt));
    let b = Branch::open(Path::new(&by_fd), "upperdir copy").map_err(io::Error::other)?;
    // The path may have changed since the branch was opened: it must be the same dir.
    let (a, c) = (
        nix::sys::stat::fstat(upper.root())?,
        nix::sys::stat::fstat(b.root())?,
    );
    if (a.st_dev, a.st_ino) != (c.st_dev, c.st_ino) {
        return Err(io::Error::other("the upperdir changed while mounting"));
    }
    Ok((mnt, b))
}

impl UpperAtime {
    /// Set up reads of `upper` for the mount flags `words` (mount options in order).
    pub(crate) fn new<S: AsRef<str>>(upper: Option<&Branch>, words: &[S]) -> UpperAtime {
        let policy = AtimePolicy::from_words(words);
        let base = upper.map_or(policy, |u| base_policy(&u.path));
        let clone = match upper {
            Some(u) if nix::unistd::geteuid().is_root() => match clone_upper(u) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::info!("atime follows the upper mount's flags ({e})");
                    None
                }
            },
            _ => None,
        };
        let a = UpperAtime {
            clone,
            base,
            policy: Mutex::new(policy),
        };
        a.set(policy);
        a
    }

    /// Apply a (new) policy: on the mount copy when there is one.
    pub(crate) fn set(&self, p: AtimePolicy) {
        *self.policy.lock() = p;
        if let Some((mnt, _)) = &self.clone {
            let (set, clear) = p.and(self.base).attrs();
            if let Err(e) = strata_sys::mount_setattr(mnt.as_fd(), set, clear) {
                tracing::warn!("cannot set the atime flags of the upper copy: {e}");
            }
        }
    }

    /// Whether reads of upper directories never update their atime (strata's flags and
    /// the upper mount's, the stricter wins).
    pub(crate) fn dirs_never(&self) -> bool {
        let p = self.policy().and(self.base);
        p.mode == AtimeMode::Never || p.nodiratime
    }

    /// The policy in force.
    pub(crate) fn policy(&self) -> AtimePolicy {
        *self.policy.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let p = AtimePolicy::from_words(&["noatime", "strictatime", "nodiratime"]);
        assert_eq!(p.mode, AtimeMode::Strict);
        assert!(p.nodiratime);
        assert_eq!(
            AtimePolicy::from_words::<&str>(&[]).mode,
            AtimeMode::Relative
        );
        let base = AtimePolicy::from_words(&["relatime"]);
        assert_eq!(p.and(base).mode, AtimeMode::Relative);
        assert_eq!(
            AtimePolicy::from_words(&["noatime"]).and(base).mode,
            AtimeMode::Never
        );
    }
}
