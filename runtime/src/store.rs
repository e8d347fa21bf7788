//! The on-disk store: where layers, images and containers live, and the lock that serializes
//! commands changing it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::err;
use crate::util::{Ctx, Result};

/// The store root and its sub-directories.
#[derive(Debug, Clone)]
pub struct Store {
    /// Root directory (`/var/lib/strata`, `$XDG_DATA_HOME/strata` or `--root`).
    pub root: PathBuf,
}

/// A held store lock; released on drop.
pub struct StoreLock {
    _lock: Flock<File>,
}

impl Store {
    /// The default root: `/var/lib/strata` for root, `$XDG_DATA_HOME/strata` (or
    /// `~/.local/share/strata`) otherwise.
    pub fn default_root() -> Result<PathBuf> {
        if nix::unistd::geteuid().is_root() {
            return Ok(PathBuf::from("/var/lib/strata"));
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return Ok(PathBuf::from(x).join("strata"));
        }
        match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(h) => Ok(PathBuf::from(h).join(".local/share/strata")),
            None => Err(err!(
                "neither XDG_DATA_HOME nor HOME is set: pass --root DIR"
            )),
        }
    }

    /// Open (creating if needed) the store at `root`, or at the default root.
    pub fn open(root: Option<&Path>) -> Result<Store> {
        let root = match root {
            Some(r) => r.to_path_buf(),
            None => Self::default_root()?,
        };
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .ctx(|| "cannot get the current directory")?
                .join(root)
        };
        let store = Store { root };
        for d in [
            store.layers_dir(),
            store.images_dir(),
            store.containers_dir(),
            store.tmp_dir(),
        ] {
            std::fs::create_dir_all(&d)
                .ctx(|| format!("cannot create the store directory {}", d.display()))?;
        }
        store.sweep_staging();
        Ok(store)
    }

    /// Extracted layers, one directory per diff_id hex.
    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }
    /// Image configs, one JSON file per image id, plus `repositories.json`.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }
    /// Containers, one directory per id.
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }
    /// Staging area on the same filesystem, so finished work is renamed into place.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    /// The extracted tree of a layer.
    pub fn layer_dir(&self, diff_hex: &str) -> PathBuf {
        self.layers_dir().join(diff_hex)
    }

    fn lock(&self, arg: FlockArg) -> Result<StoreLock> {
        let path = self.root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .ctx(|| format!("cannot open the store lock {}", path.display()))?;
        let lock = Flock::lock(f, arg)
            .map_err(|(_, e)| err!("cannot lock the store {}: {e}", path.display()))?;
        Ok(StoreLock { _lock: lock })
    }

    /// Take the store lock exclusively (any command that changes the store).
    pub fn lock_exclusive(&self) -> Result<StoreLock> {
        self.lock(FlockArg::LockExclusive)
    }

    /// Take the store lock shared (commands that only read).
    pub fn lock_shared(&self) -> Result<StoreLock> {
        self.lock(FlockArg::LockShared)
    }

    /// A fresh, empty staging directory under tmp/ (refused once the command is being
    /// interrupted: see [`close_staging`]).
    pub fn staging_dir(&self, what: &str) -> Result<PathBuf> {
        let _open = STAGING.lock().unwrap_or_else(|e| e.into_inner());
        if STAGING_CLOSED.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(crate::err!("interrupted"));
        }
        // Named for its owner process (pid and start time), so that the next store open
        // can tell a crashed command's leftovers from a running command's staging.
        let (pid, start) = staging_owner_prefix();
        let p = self.tmp_dir().join(format!(
            "{what}-{pid}.{start}-{}",
            crate::util::random_id()?
        ));
        std::fs::create_dir(&p).ctx(|| format!("cannot create {}", p.display()))?;
        Ok(p)
    }

    /// Remove the staging of commands that are gone (killed, crashed, interrupted before
    /// they could clean up); a running strata's staging is left alone. Best effort: what
    /// cannot be removed now is tried again at the next open.
    fn sweep_staging(&self) {
        let Ok(rd) = std::fs::read_dir(self.tmp_dir()) else {
            return;
        };
        let mounts = mounts_under(&self.tmp_dir());
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = match staging_owner(&name) {
                Some((pid, start)) => crate::util::pid_start_time(pid) != Some(start),
                // Named by an older strata, without its owner: stale after a day.
                None => e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 24 * 3600),
            };
            if stale {
                remove_staging(&e.path(), &mounts);
            }
        }
    }
}

/// Held while a staging directory is made, so that the interrupt handler's sweep of this
/// process's staging never runs between a command's check and its mkdir.
static STAGING: std::sync::Mutex<()> = std::sync::Mutex::new(());
static STAGING_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// No staging directory is made from now on; the guard (held until the process exits)
/// waits out one being made, so a sweep after this sees every directory there will be.
pub(crate) fn close_staging() -> std::sync::MutexGuard<'static, ()> {
    let g = STAGING.lock().unwrap_or_else(|e| e.into_inner());
    STAGING_CLOSED.store(true, std::sync::atomic::Ordering::SeqCst);
    g
}

/// Remove a directory tree, making read-only directories writable first (a layer may hold them).
pub fn remove_tree(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err!("cannot remove {}: {e}", path.display())),
        Ok(_) => {}
    }
    if std::fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    // Retry after making every directory writable and searchable.
    fn fix(p: &Path) {
        if let Ok(m) = std::fs::symlink_metadata(p) {
            if m.is_dir() {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
                if let Ok(rd) = std::fs::read_dir(p) {
                    for e in rd.flatten() {
                        fix(&e.path());
                    }
                }
            }
        }
    }
    fix(path);
    std::fs::remove_dir_all(path).ctx(|| format!("cannot remove {}", path.display()))
}

/// This process as a staging owner: its pid and start time (clock ticks after boot).
pub fn staging_owner_prefix() -> (i32, u64) {
    let pid = std::process::id() as i32;
    (pid, crate::util::pid_start_time(pid).unwrap_or(0))
}

/// The owner (pid, start time) a staging entry's name records: `WHAT-PID.START-RANDOM`.
pub fn staging_owner(name: &str) -> Option<(i32, u64)> {
    // WHAT may hold dashes itself (native-PID): the owner is the second field from the end.
    let mut parts = name.rsplitn(3, '-');
    let (_, owner) = (parts.next()?, parts.next()?);
    parts.next()?;
    let (pid, start) = owner.split_once('.')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// The mount points at or below `dir` in this mount namespace. A staging directory that
/// holds one (a commit's view of a container, a driver probe) is never removed as a tree:
/// the removal would go through the mount into what it shows.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        // mountinfo escapes space, tab, newline and backslash as octal.
        .map(|m| {
            PathBuf::from(
                m.replace("\\040", " ")
                    .replace("\\011", "\t")
                    .replace("\\012", "\n")
                    .replace("\\134", "\\"),
            )
        })
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// Remove staging entry `p` unless a mount is inside it; whether it is gone.
pub fn remove_staging(p: &Path, mounts: &[PathBuf]) -> bool {
    if mounts.iter().any(|m| m.starts_with(p)) {
        return false;
    }
    match std::fs::symlink_metadata(p) {
        Ok(m) if !m.is_dir() => std::fs::remove_file(p).is_ok(),
        _ => remove_tree(p).is_ok(),
    }
}
