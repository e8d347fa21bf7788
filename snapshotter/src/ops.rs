//! The Snapshotter trait over the metadata db and the snapshot directories.

use crate::db::{Db, Kind, MetaStore, Record};
use crate::{usage, Error};
use containerd_snapshots::api::types::Mount;
use containerd_snapshots::{tonic, Info, Snapshotter, Usage};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// The snapshotter: its root directory and the metadata of every snapshot.
pub struct Strata {
    root: PathBuf,
    // The db in memory (this process holds the root's flock, nothing else writes it) and
    // its file, rewritten after every change; an operation holds the lock, never across
    // an await.
    meta: Mutex<(MetaStore, Db)>,
}

impl Strata {
    /// Open (or create) the snapshotter at `root`, holding its lock.
    pub fn open(root: &Path) -> Result<Self, Error> {
        let snaps = root.join("snapshots");
        std::fs::create_dir_all(&snaps).map_err(|e| Error::io(&snaps, e))?;
        let meta = MetaStore::open(root)?;
        // A db that does not parse is refused now, not at the first request.
        let db = meta.load()?;
        Ok(Strata {
            root: root.to_path_buf(),
            meta: Mutex::new((meta, db)),
        })
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    fn with_db<T>(&self, f: impl FnOnce(&mut Db) -> Result<(T, bool), Error>) -> Result<T, Error> {
        let mut guard = self
            .meta
            .lock()
            .map_err(|_| Error::Internal("metadata lock poisoned".into()))?;
        let (meta, db) = &mut *guard;
        // On a copy: a failed operation or write leaves the db as the file has it.
        let mut next = db.clone();
        let (out, changed) = f(&mut next)?;
        if changed {
            meta.save(&next)?;
            *db = next;
        }
        Ok(out)
    }

    fn mounts_of(&self, db: &Db, key: &str) -> Result<Vec<Mount>, Error> {
        let rec = db
            .snapshots
            .get(key)
            .ok_or_else(|| Error::NotFound(key.to_string()))?;
        let parents = db.parent_ids(key)?;
        let fs = |id: u64| self.dir(id).join("fs").display().to_string();
        let bind = |source: String, mode: &str| Mount {
            r#type: "bind".into(),
            source,
            options: vec![mode.into(), "rbind".into()],
            ..Default::default()
        };
        if parents.is_empty() {
            let mode = if rec.kind == Kind::View { "ro" } else { "rw" };
            return Ok(vec![bind(fs(rec.id), mode)]);
        }
        let mut options = Vec::new();
        if rec.kind == Kind::Active {
            let work = self.dir(rec.id).join("work").display().to_string();
            options.push(format!("workdir={work}"));
            options.push(format!("upperdir={}", fs(rec.id)));
        } else if let [only] = parents[..] {
            return Ok(vec![bind(fs(only), "ro")]);
        }
        let lower: Vec<String> = parents.iter().map(|&id| fs(id)).collect();
        options.push(format!("lowerdir={}", lower.join(":")));
        Ok(vec![Mount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            options,
            ..Default::default()
        }])
    }

    fn create(
        &self,
        kind: Kind,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, Error> {
        self.with_db(|db| {
            if db.snapshots.contains_key(&key) {
                return Err(Error::AlreadyExists(key));
            }
            if !parent.is_empty() {
                match db.snapshots.get(&parent) {
                    None => return Err(Error::NotFound(parent)),
                    Some(p) if p.kind != Kind::Committed => {
                        return Err(Error::FailedPrecondition(format!(
                            "parent {parent} is not a committed snapshot"
                        )))
                    }
                    Some(_) => {}
                }
            }
            db.next_id += 1;
            let id = db.next_id;
            let dir = self.dir(id);
            // A leftover of a crash between mkdir and the db write is replaced.
            let _ = std::fs::remove_dir_all(&dir);
            for sub in ["fs", "work"] {
                let p = dir.join(sub);
                std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
            }
            let now = SystemTime::now();
            db.snapshots.insert(
                key.clone(),
                Record {
                    id,
                    kind,
                    parent,
                    labels,
                    created: now,
                    updated: now,
                },
            );
            let mounts = self.mounts_of(db, &key)?;
            Ok((mounts, true))
        })
    }

    fn info(key: &str, r: &Record) -> Info {
        Info {
            kind: match r.kind {
                Kind::Active => containerd_snapshots::Kind::Active,
                Kind::View => containerd_snapshots::Kind::View,
                Kind::Committed => containerd_snapshots::Kind::Committed,
            },
            name: key.to_string(),
            parent: r.parent.clone(),
            labels: r.labels.clone(),
            created_at: r.created,
            updated_at: r.updated,
        }
    }

    /// Remove the directories of snapshots the db does not know (left by a crash).
    fn cleanup(&self) -> Result<(), Error> {
        let known: HashSet<String> = self.with_db(|db| {
            let ids = db.snapshots.values().map(|r| r.id.to_string()).collect();
            Ok((ids, false))
        })?;
        let snaps = self.root.join("snapshots");
        for entry in std::fs::read_dir(&snaps).map_err(|e| Error::io(&snaps, e))? {
            let entry = entry.map_err(|e| Error::io(&snaps, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !known.contains(&name) {
                std::fs::remove_dir_all(entry.path()).map_err(|e| Error::io(&entry.path(), e))?;
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Snapshotter for Strata {
    type Error = Error;

    async fn stat(&self, key: String) -> Result<Info, Error> {
        self.with_db(|db| match db.snapshots.get(&key) {
            Some(r) => Ok((Self::info(&key, r), false)),
            None => Err(Error::NotFound(key.clone())),
        })
    }

    async fn update(&self, info: Info, fieldpaths: Option<Vec<String>>) -> Result<Info, Error> {
        let key = info.name.clone();
        self.with_db(|db| {
            let r = db
                .snapshots
                .get_mut(&key)
                .ok_or_else(|| Error::NotFound(key.clone()))?;
            let paths = fieldpaths.unwrap_or_default();
            if paths.is_empty() {
                r.labels = info.labels.clone();
            }
            for p in &paths {
                if p == "labels" {
                    r.labels = info.labels.clone();
                } else if let Some(label) = p.strip_prefix("labels.") {
                    match info.labels.get(label) {
                        Some(v) => r.labels.insert(label.to_string(), v.clone()),
                        None => r.labels.remove(label),
                    };
                } else {
                    return Err(Error::InvalidArgument(format!(
                        "cannot update {p} of snapshot {key}"
                    )));
                }
            }
            r.updated = SystemTime::now();
            Ok((Self::info(&key, r), true))
        })
    }

    async fn usage(&self, key: String) -> Result<Usage, Error> {
        let id = self.with_db(|db| match db.snapshots.get(&key) {
            Some(r) => Ok((r.id, false)),
            None => Err(Error::NotFound(key.clone())),
        })?;
        let fs = self.dir(id).join("fs");
        let (size, inodes) = tokio::task::spawn_blocking(move || usage::du(&fs))
            .await
            .map_err(|e| Error::Internal(format!("usage: {e}")))??;
        Ok(Usage { inodes, size })
    }

    async fn mounts(&self, key: String) -> Result<Vec<Mount>, Error> {
        self.with_db(|db| Ok((self.mounts_of(db, &key)?, false)))
    }

    async fn prepare(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, Error> {
        self.create(Kind::Active, key, parent, labels)
    }

    async fn view(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, Error> {
        self.create(Kind::View, key, parent, labels)
    }

    async fn commit(
        &self,
        name: String,
        key: String,
        labels: HashMap<String, String>,
    ) -> Result<(), Error> {
        self.with_db(|db| {
            if db.snapshots.contains_key(&name) {
                return Err(Error::AlreadyExists(name.clone()));
            }
            let mut r = match db.snapshots.get(&key) {
                None => return Err(Error::NotFound(key.clone())),
                Some(r) if r.kind != Kind::Active => {
                    return Err(Error::FailedPrecondition(format!(
                        "snapshot {key} is not active"
                    )))
                }
                Some(r) => r.clone(),
            };
            db.snapshots.remove(&key);
            r.kind = Kind::Committed;
            r.labels = labels;
            r.updated = SystemTime::now();
            db.snapshots.insert(name.clone(), r);
            Ok(((), true))
        })?;
        tracing::debug!(%name, %key, "committed");
        Ok(())
    }

    async fn remove(&self, key: String) -> Result<(), Error> {
        let id = self.with_db(|db| {
            if db.has_children(&key) {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {key} has children"
                )));
            }
            match db.snapshots.remove(&key) {
                Some(r) => Ok((r.id, true)),
                None => Err(Error::NotFound(key.clone())),
            }
        })?;
        // After the db no longer names it: a crash here leaves a directory Cleanup removes.
        let dir = self.dir(id);
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir).map_err(|e| (dir, e)))
            .await
            .map_err(|e| Error::Internal(format!("remove: {e}")))?
            .map_err(|(dir, e)| Error::io(&dir, e))
    }

    async fn clear(&self) -> Result<(), Error> {
        self.cleanup()
    }

    type InfoStream = tokio_stream::Iter<std::vec::IntoIter<Result<Info, Error>>>;

    async fn list(
        &self,
        _snapshotter: String,
        _filters: Vec<String>,
    ) -> Result<Self::InfoStream, Error> {
        let infos = self.with_db(|db| {
            let v: Vec<Result<Info, Error>> = db
                .snapshots
                .iter()
                .map(|(k, r)| Ok(Self::info(k, r)))
                .collect();
            Ok((v, false))
        })?;
        Ok(tokio_stream::iter(infos))
    }
}
