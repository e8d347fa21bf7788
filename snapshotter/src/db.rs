//! The snapshot metadata: one JSON file (ROOT/metadata.json) holding every snapshot's key,
//! parent, kind, labels and times, rewritten whole through a temporary file and a rename
//! (atomic: a crash leaves the old file or the new one, never half of either).
//!
//! The snapshotter process holds an exclusive `flock` on ROOT/lock for as long as it runs,
//! so a second snapshotter on the same root refuses to start instead of racing this one.

use crate::Error;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What containerd calls a snapshot's kind (containerd-snapshots' `Kind` has no Clone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Writable, not committed yet.
    Active,
    /// Read-only view of a committed parent.
    View,
    /// A layer: read-only, may be a parent.
    Committed,
}

/// One snapshot's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Directory name under ROOT/snapshots (stable across Commit, which renames the key).
    pub id: u64,
    /// Active, view or committed.
    pub kind: Kind,
    /// The parent's key ("" for none); a parent is always committed.
    pub parent: String,
    /// containerd's labels.
    #[serde(default)]
    pub labels: HashMap<String, String>,
    /// When it was made.
    pub created: SystemTime,
    /// When it last changed (commit, label update).
    pub updated: SystemTime,
}

/// Every snapshot by key, and the next directory id.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Db {
    /// The id the next snapshot's directory gets.
    pub next_id: u64,
    /// The snapshots by key.
    pub snapshots: BTreeMap<String, Record>,
}

impl Db {
    /// The chain of committed parents of `key`, nearest first (their ids).
    pub fn parent_ids(&self, key: &str) -> Result<Vec<u64>, Error> {
        let mut ids = Vec::new();
        let mut cur = self
            .snapshots
            .get(key)
            .ok_or_else(|| Error::NotFound(key.to_string()))?
            .parent
            .clone();
        // Bounded: a chain longer than the number of snapshots is a cycle in a damaged db.
        while !cur.is_empty() {
            if ids.len() > self.snapshots.len() {
                return Err(Error::Internal(format!("parent cycle at {cur}")));
            }
            let rec = self
                .snapshots
                .get(&cur)
                .ok_or_else(|| Error::Internal(format!("missing parent {cur}")))?;
            ids.push(rec.id);
            cur = rec.parent.clone();
        }
        Ok(ids)
    }

    /// Whether any snapshot has `key` as its parent.
    pub fn has_children(&self, key: &str) -> bool {
        self.snapshots.values().any(|r| r.parent == key)
    }
}

/// The on-disk metadata file and the root's lock.
pub struct MetaStore {
    path: PathBuf,
    // Held for the process's life: the flock is released when the file is closed.
    _lock: nix::fcntl::Flock<File>,
}

impl MetaStore {
    /// Take `root`'s lock (refused while another snapshotter holds it).
    pub fn open(root: &Path) -> Result<Self, Error> {
        let lock_path = root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| {
                Error::Internal(format!(
                    "{}: another snapshotter holds this root ({e})",
                    lock_path.display()
                ))
            })?;
        Ok(MetaStore {
            path: root.join("metadata.json"),
            _lock: lock,
        })
    }

    /// The db as last saved (empty when there is no file yet).
    pub fn load(&self) -> Result<Db, Error> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Internal(format!("{}: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Db::default()),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    /// Write `db` through a temporary file and a rename (the old file stays on failure).
    pub fn save(&self, db: &Db) -> Result<(), Error> {
        let bytes = serde_json::to_vec(db).map_err(|e| Error::Internal(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        // The rename itself reaches the disk with the directory.
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}
