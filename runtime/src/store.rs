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

    /// A fresh, empty staging directory under tmp/.
    pub fn staging_dir(&self, what: &str) -> Result<PathBuf> {
        let p = self
            .tmp_dir()
            .join(format!("{what}-{}", crate::util::random_id()?));
        std::fs::create_dir(&p).ctx(|| format!("cannot create {}", p.display()))?;
        Ok(p)
    }
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
