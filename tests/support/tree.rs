//! Walk a whole merged tree into a comparable snapshot.

use crate::mount::Mounted;
use crate::ops::{fnv1a, FileKind};
use std::collections::{BTreeMap, BTreeSet};

/// What a tree walk records for one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: FileKind,
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: Option<u64>,
    pub nlink: Option<u64>,
    /// (length, FNV-1a hash) of regular files.
    pub content: Option<(usize, u64)>,
    pub target: Option<String>,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// A merged tree: every path with its entry, and the groups of paths sharing an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    pub entries: BTreeMap<String, Entry>,
    /// Sets (of size > 1) of non-directory paths with the same st_ino.
    pub links: BTreeSet<Vec<String>>,
}

impl Tree {
    /// Human-readable differences, `self` is "before"/"reference".
    pub fn diff(&self, other: &Tree) -> Vec<String> {
        let mut out = Vec::new();
        for (p, e) in &self.entries {
            match other.entries.get(p) {
                None => out.push(format!("  missing  /{p}: {e:?}")),
                Some(o) if o != e => out.push(format!("  changed  /{p}:\n    {e:?}\n    {o:?}")),
                _ => {}
            }
        }
        for (p, e) in &other.entries {
            if !self.entries.contains_key(p) {
                out.push(format!("  extra    /{p}: {e:?}"));
            }
        }
        if self.links != other.links {
            out.push(format!(
                "  hard-link groups differ:\n    {:?}\n    {:?}",
                self.links, other.links
            ));
        }
        out
    }
}

impl Mounted {
    /// Walk the whole mount (readdir checks d_ino/st_dev on every entry).
    pub fn tree(&self) -> Tree {
        let mut entries = BTreeMap::new();
        let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        let mut stack = vec![String::new()];
        while let Some(dir) = stack.pop() {
            let e = self.entry(&dir);
            entries.insert(dir.clone(), e);
            let list = self
                .readdir(&dir)
                .unwrap_or_else(|e| panic!("{}: readdir /{dir}: {e}", self.label()));
            for (name, kind) in list {
                let p = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                if kind == FileKind::Dir {
                    stack.push(p);
                } else {
                    let ino = self
                        .ino(&p)
                        .unwrap_or_else(|e| panic!("{}: lstat /{p}: {e}", self.label()));
                    inodes.entry(ino).or_default().push(p.clone());
                    entries.insert(p.clone(), self.entry(&p));
                }
            }
        }
        let links = inodes
            .into_values()
            .filter(|v| v.len() > 1)
            .map(|mut v| {
                v.sort();
                v
            })
            .collect();
        Tree { entries, links }
    }

    fn entry(&self, p: &str) -> Entry {
        let m = self
            .stat(p)
            .unwrap_or_else(|e| panic!("{}: lstat /{p}: {e}", self.label()));
        let content = (m.kind == FileKind::File).then(|| {
            let d = self
                .read(p)
                .unwrap_or_else(|e| panic!("{}: read /{p}: {e}", self.label()));
            (d.len(), fnv1a(&d))
        });
        let target = (m.kind == FileKind::Symlink).then(|| {
            self.readlink(p)
                .unwrap_or_else(|e| panic!("{}: readlink /{p}: {e}", self.label()))
        });
        let xattrs = self
            .xattr_values(p)
            .unwrap_or_else(|e| panic!("{}: xattrs /{p}: {e}", self.label()));
        Entry {
            kind: m.kind,
            perm: m.perm,
            uid: m.uid,
            gid: m.gid,
            size: m.size,
            nlink: m.nlink,
            content,
            target,
            xattrs,
        }
    }
}
