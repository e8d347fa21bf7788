//! What the xattrs of a lower entry tell the union (its strata record, an opaque mark), read
//! with as few syscalls as the answer needs, and remembered when the answer is "nothing".
//!
//! A lookup in a lower branch used to probe each name it might find with its own getxattr:
//! the record in both namespaces (`trusted.strata.meta`, `user.strata.meta`) and, for a
//! directory, the three opaque marks. Most image entries carry none of them, so one
//! llistxattr answers, and a getxattr follows only for a name it lists.
//!
//! Lower branches never change under a mount, so an entry found to carry nothing (no record;
//! for a directory also no opaque mark and no `.wh..wh..opq` marker) is remembered in a
//! bounded LRU keyed by its identity (device, inode, ctime: a file replaced or relabelled
//! in the branch, by a lazy fill for example, has a new ctime), and later lookups of it read
//! no xattr at all.

use crate::union::meta::{Meta, MetaStore};
use lru::LruCache;
use nix::sys::stat::FileStat;
use parking_lot::Mutex;
use std::ffi::{CStr, OsStr};
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::ffi::OsStrExt;
use strata_sys as sys;

/// Opaque marks in the xattr forms in use (fuse-overlayfs writes user.fuseoverlayfs.opaque
/// where it may not write trusted.*).
pub const OPAQUE_XATTRS: [&str; 3] = [
    "trusted.overlay.opaque",
    "user.overlay.opaque",
    "user.fuseoverlayfs.opaque",
];

/// How many plain lower entries are remembered (about 100 bytes each).
const PLAIN_CAPACITY: usize = 32 * 1024;

/// Identity of a branch entry, changed by a replace or any metadata change.
type Key = (u64, u64, i64, i64);

fn key(st: &FileStat) -> Key {
    (st.st_dev, st.st_ino, st.st_ctime, st.st_ctime_nsec)
}

/// Lower entries known to carry nothing strata reads.
pub(crate) struct PlainLowers {
    lru: Mutex<LruCache<Key, ()>>,
}

impl Default for PlainLowers {
    fn default() -> PlainLowers {
        PlainLowers {
            lru: Mutex::new(LruCache::new(
                NonZeroUsize::new(PLAIN_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }
}

impl PlainLowers {
    /// Whether the entry stat'ed as `st` is known to carry nothing.
    pub(crate) fn contains(&self, st: &FileStat) -> bool {
        self.lru.lock().get(&key(st)).is_some()
    }

    /// Remember that the entry stat'ed as `st` carries nothing.
    pub(crate) fn insert(&self, st: &FileStat) {
        self.lru.lock().put(key(st), ());
    }
}

/// The xattr names of the entry at `path`, or None when they cannot be listed (the caller
/// then probes each name it wants, as before).
fn list(path: &CStr) -> Option<Vec<Vec<u8>>> {
    sys::llistxattr(path).ok()
}

/// What the xattrs of one lower entry say.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    /// Its strata record (either namespace).
    pub meta: Option<Meta>,
    /// An opaque mark (asked for directories only).
    pub opaque: bool,
}

impl MetaStore {
    /// The record and (with `dir`) the opaque mark of the lower entry at `path` (a
    /// /proc/self/fd path): one llistxattr, then a getxattr per listed name.
    pub(crate) fn lower_marks(&self, path: &CStr, dir: bool) -> io::Result<Marks> {
        let Some(names) = list(path) else {
            return Ok(Marks {
                meta: self.read_lower(path)?,
                opaque: dir && opaque_by_probe(path)?,
            });
        };
        let listed = |n: &OsStr| names.iter().any(|l| l.as_slice() == n.as_bytes());
        let mut m = Marks::default();
        for n in [self.xattr_name(), self.other_name()] {
            if listed(n) {
                m.meta = self.read_named(path, n)?;
                if m.meta.is_some() {
                    break;
                }
            }
        }
        if dir {
            for n in OPAQUE_XATTRS {
                if listed(OsStr::new(n)) && opaque_value(path, n)? {
                    m.opaque = true;
                    break;
                }
            }
        }
        Ok(m)
    }
}

/// Whether xattr `name` of the entry at `path` says opaque (`y`).
fn opaque_value(path: &CStr, name: &str) -> io::Result<bool> {
    match sys::lgetxattr(path, OsStr::new(name)) {
        Ok(Some(v)) => Ok(v.as_slice() == b"y"),
        Ok(None) => Ok(false),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the entry at `path` carries an opaque mark, each form probed.
pub(crate) fn opaque_by_probe(path: &CStr) -> io::Result<bool> {
    for n in OPAQUE_XATTRS {
        if opaque_value(path, n)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether the entry at `path` carries an opaque mark: one llistxattr, then a getxattr per
/// listed form.
pub(crate) fn opaque_listed(path: &CStr) -> io::Result<bool> {
    let Some(names) = list(path) else {
        return opaque_by_probe(path);
    };
    for n in OPAQUE_XATTRS {
        if names.iter().any(|l| l.as_slice() == n.as_bytes()) && opaque_value(path, n)? {
            return Ok(true);
        }
    }
    Ok(false)
}
