//! The union core: branches, the inode table and the per-request context.
//!
//! Operations live in ops_*.rs; name resolution across branches in resolve.rs; copy-up in
//! copyup.rs; directory merging in dirmerge.rs. Nothing here knows about FUSE.

use crate::config::options::MountOptions;
use crate::types::{erofs, errno, Layer};
use crate::union::atime::AtimeMode;
use crate::union::attr::Attr;
use crate::union::branch::Branch;
use crate::union::handles::Handles;
use crate::union::inode::{NodeTable, Placement, ROOT};
use crate::union::meta::MetaStore;
use lru::LruCache;
use nix::fcntl::OFlag;
use nix::sys::stat::FileStat;
use parking_lot::{Mutex, MutexGuard, RwLock};
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The workdir: scratch space on the upper's filesystem.
#[derive(Debug)]
pub(crate) struct Work {
    /// `WORKDIR/work`: staging for copy-up and new directories.
    pub dir: OwnedFd,
    /// `WORKDIR/index`: where older strata kept the hard-link index (read, not written:
    /// the index is in the upper now, index.rs).
    pub index: OwnedFd,
}

const COPYUP_STRIPES: usize = 64;
/// Most directory fds the cache holds (fewer under a low fd limit: [`dirfd_capacity`]).
const DIRFD_CACHE: usize = 4096;

/// The dirfd cache's size: at most a quarter of the soft fd limit, so that the files the
/// mount's users open, delta files and the /dev/fuse clones always find fds. Sized past the
/// limit, the cache took every fd once ~1000 directories had been visited under the common
/// limit of 1024, and every request after that failed with EMFILE.
fn dirfd_capacity() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    usize::try_from(soft / 4)
        .unwrap_or(DIRFD_CACHE)
        .clamp(16, DIRFD_CACHE)
}

/// Cached O_PATH fds of branch directories, by (layer, path).
struct DirFds {
    lru: LruCache<(Layer, PathBuf), Arc<OwnedFd>>,
    /// Bumped whenever upper entries are dropped: an fd opened before that may name a
    /// directory that has moved since, and must not be cached.
    upper_epoch: u64,
}

/// The union filesystem.
pub struct Union {
    pub(crate) upper: Option<Branch>,
    pub(crate) lowers: Vec<Branch>,
    pub(crate) work: Option<Work>,
    pub(crate) nodes: RwLock<NodeTable>,
    pub(crate) handles: Handles,
    pub(crate) opts: MountOptions,
    pub(crate) meta: MetaStore,
    dirfds: Mutex<DirFds>,
    copyup_locks: Vec<Mutex<()>>,
    tmp_seq: AtomicU64,
    pub(crate) writeback: AtomicBool,
    pub(crate) deltas:
        Mutex<std::collections::HashMap<u64, std::sync::Weak<crate::delta::file::DeltaFile>>>,
    /// Background compaction of dense deltas.
    pub(crate) compactor: crate::delta::file::Compactor,
    /// Reads of branch entries and the mount's atime flags (atime.rs).
    pub(crate) atime: crate::union::atime::UpperAtime,
    /// Read-only now: `-o ro`, changed by `remount` (remount.rs).
    read_only: AtomicBool,
    /// Lower entries known to carry no strata record or opaque mark (lower_marks.rs).
    pub(crate) plain_lowers: crate::union::lower_marks::PlainLowers,
}

impl Union {
    /// Assemble a union from opened branches; see [`crate::fuse::session::prepare`].
    pub(crate) fn new(
        upper: Option<Branch>,
        lowers: Vec<Branch>,
        work: Option<Work>,
        opts: MountOptions,
        meta: MetaStore,
    ) -> Union {
        let layers: Vec<(usize, PathBuf)> =
            (0..lowers.len()).map(|l| (l, PathBuf::new())).collect();
        let root_place = Placement {
            kind: libc::S_IFDIR,
            upper: upper.is_some(),
            lower: None,
            dir: Some(crate::union::inode::DirInfo { layers }),
            redirected: false,
            delta: false,
        };
        let atime = crate::union::atime::UpperAtime::new(upper.as_ref(), &opts.kernel);
        let read_only = AtomicBool::new(opts.read_only);
        Union {
            atime,
            read_only,
            upper,
            lowers,
            work,
            nodes: RwLock::new(NodeTable::with_root(root_place)),
            handles: Handles::default(),
            opts,
            meta,
            dirfds: Mutex::new(DirFds {
                lru: LruCache::new(
                    NonZeroUsize::new(dirfd_capacity()).unwrap_or(NonZeroUsize::MIN),
                ),
                upper_epoch: 0,
            }),
            copyup_locks: (0..COPYUP_STRIPES).map(|_| Mutex::new(())).collect(),
            tmp_seq: AtomicU64::new(0),
            writeback: AtomicBool::new(false),
            deltas: Mutex::new(std::collections::HashMap::new()),
            compactor: crate::delta::file::Compactor::default(),
            plain_lowers: Default::default(),
        }
    }

    /// The branch behind `layer`.
    pub(crate) fn branch(&self, layer: Layer) -> io::Result<&Branch> {
        match layer {
            Layer::Upper => self.upper.as_ref().ok_or_else(erofs),
            Layer::Lower(i) => self.lowers.get(i).ok_or_else(|| errno(libc::EIO)),
        }
    }

    /// The upper branch, or EROFS for a read-only union.
    pub(crate) fn upper(&self) -> io::Result<&Branch> {
        if self.read_only.load(Ordering::Relaxed) {
            return Err(erofs());
        }
        self.upper.as_ref().ok_or_else(erofs)
    }

    /// The workdir, present whenever the upper is.
    pub(crate) fn work(&self) -> io::Result<&Work> {
        self.work.as_ref().ok_or_else(erofs)
    }

    /// Whether this union can be written.
    pub fn writable(&self) -> bool {
        self.upper.is_some() && !self.read_only.load(Ordering::Relaxed)
    }

    /// Make the union read-only or writable again (remount); false if it has no upper
    /// to write to.
    pub fn set_read_only(&self, ro: bool) -> bool {
        if !ro && self.upper.is_none() {
            return false;
        }
        self.read_only.store(ro, Ordering::Relaxed);
        true
    }

    /// Mount options in force.
    pub fn options(&self) -> &MountOptions {
        &self.opts
    }

    /// An O_PATH fd of directory `rel` in `layer`, from a small LRU cache.
    pub(crate) fn dirfd(&self, layer: Layer, rel: &Path) -> io::Result<Arc<OwnedFd>> {
        let key = (layer, rel.to_path_buf());
        let epoch = {
            let mut cache = self.dirfds.lock();
            if let Some(fd) = cache.lru.get(&key) {
                return Ok(fd.clone());
            }
            cache.upper_epoch
        };
        let branch = self.branch(layer)?;
        let fd = match branch.open_dir(rel) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                // Out of fds: the cache is the one holder that can let go.
                self.shed_dirfds();
                branch.open_dir(rel)?
            }
            r => r?,
        };
        let fd = Arc::new(fd);
        let mut cache = self.dirfds.lock();
        if layer != Layer::Upper || cache.upper_epoch == epoch {
            cache.lru.put(key, fd.clone());
        }
        Ok(fd)
    }

    /// Stat of `rel` in `layer` (not following a final symlink) through its parent's
    /// cached dirfd: one fstatat, where opening the path from the branch root costs an
    /// openat2, an fstat and a close (every getattr of a file took those three).
    pub(crate) fn stat_in(&self, layer: Layer, rel: &Path) -> io::Result<FileStat> {
        match (rel.parent(), rel.file_name()) {
            (Some(parent), Some(name)) => {
                let dir = self.dirfd(layer, parent)?;
                crate::union::branch::stat_at(dir.as_fd(), name)
            }
            _ => self.branch(layer)?.stat(rel),
        }
    }

    /// Close the older half of the cached directory fds.
    fn shed_dirfds(&self) {
        let mut cache = self.dirfds.lock();
        let n = cache.lru.len().div_ceil(2);
        tracing::warn!("out of file descriptors: closing {n} cached directory fds");
        for _ in 0..n {
            cache.lru.pop_lru();
        }
    }

    /// Forget cached directory fds of the upper (after directories moved or vanished there).
    pub(crate) fn invalidate_upper_dirfds(&self) {
        let mut cache = self.dirfds.lock();
        cache.upper_epoch += 1;
        let stale: Vec<_> = cache
            .lru
            .iter()
            .filter(|((l, _), _)| *l == Layer::Upper)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            cache.lru.pop(&k);
        }
    }

    /// A unique name for staging an entry in the workdir.
    pub(crate) fn tmp_name(&self) -> std::ffi::OsString {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        format!("#{}.{n}", std::process::id()).into()
    }

    /// Serialize copy-ups of one inode.
    pub(crate) fn copyup_lock(&self, ino: u64) -> MutexGuard<'_, ()> {
        let i = (ino.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % COPYUP_STRIPES;
        self.copyup_locks[i].lock()
    }

    /// Unique inode number for a raw inode of the filesystem with index `fs_index`.
    pub(crate) fn xino(&self, fs_index: u64, raw: u64) -> u64 {
        let ino = raw ^ (fs_index << 56);
        if ino == ROOT || ino == 0 {
            ino | (1 << 63)
        } else {
            ino
        }
    }

    /// Reported inode number of an entry stat'ed in `layer`.
    pub(crate) fn layer_ino(&self, layer: Layer, st: &FileStat) -> io::Result<u64> {
        Ok(self.xino(self.branch(layer)?.fs_index, st.st_ino))
    }

    /// Turn a branch stat into reported attributes: inode number, ownership mapping, nlink.
    pub(crate) fn attr_from(&self, st: &FileStat, ino: u64) -> Attr {
        let mut a = Attr::from_stat(st, ino);
        a.uid = self
            .opts
            .squash_uid
            .unwrap_or_else(|| self.opts.uidmap.to_inside(st.st_uid));
        a.gid = self
            .opts
            .squash_gid
            .unwrap_or_else(|| self.opts.gidmap.to_inside(st.st_gid));
        if self.opts.static_nlink && a.kind() == libc::S_IFDIR {
            a.nlink = 1;
        }
        a
    }

    /// A directory merged from several branches reports nlink 1, as overlayfs does:
    /// its own branch's count misses the subdirectories of the others (lower `p/{s1,s2}`
    /// plus an upper `p/s3` would say 3), and nlink-based walkers (find without -noleaf)
    /// would skip subdirectories. 1 means "unknown" to them. A directory in one branch
    /// only keeps that branch's count, which is exact.
    pub(crate) fn fix_merged_dir_nlink(&self, a: &mut Attr, place: &Placement) {
        if !place.is_dir() || a.kind() != libc::S_IFDIR {
            return;
        }
        let branches = usize::from(place.upper) + place.dir.as_ref().map_or(0, |d| d.layers.len());
        if branches > 1 {
            a.nlink = 1;
        }
    }

    /// Disk uid for a uid given in the mount (unmapped: the overflow id, as fuse-overlayfs).
    pub(crate) fn uid_out(&self, uid: u32) -> io::Result<u32> {
        Ok(self.opts.uidmap.to_outside(uid))
    }

    /// Disk gid for a gid given in the mount (unmapped: the overflow id, as fuse-overlayfs).
    pub(crate) fn gid_out(&self, gid: u32) -> io::Result<u32> {
        Ok(self.opts.gidmap.to_outside(gid))
    }

    /// Merged path and placement of a node.
    pub(crate) fn node_info(&self, ino: u64) -> io::Result<(PathBuf, Placement)> {
        let (path, place, stale, seen) = self.node_info_raw(ino)?;
        if !stale {
            return Ok((path, place));
        }
        let r = self.resolve_path(&path)?;
        let mut nodes = self.nodes.write();
        if nodes.resolved(ino, r.place.clone(), seen) {
            return Ok((path, r.place));
        }
        // Placed by a copy-up or rename while we resolved: that is newer.
        match nodes.get(ino) {
            Some(n) => Ok((path, n.place.clone())),
            None => Err(errno(libc::ESTALE)),
        }
    }

    fn node_info_raw(&self, ino: u64) -> io::Result<(PathBuf, Placement, bool, u64)> {
        let nodes = self.nodes.read();
        let Some(node) = nodes.get(ino) else {
            tracing::debug!(ino, "request for a node the table does not hold");
            return Err(errno(libc::ESTALE));
        };
        if node.unlinked {
            return Err(errno(libc::ENOENT));
        }
        let Some(path) = nodes.path(ino) else {
            tracing::debug!(ino, aliases = ?node.aliases, "node has no reachable path");
            return Err(errno(libc::ESTALE));
        };
        Ok((path, node.place.clone(), node.place_stale, nodes.clock()))
    }

    /// Update the placement of a node after the entry at `path` was copied up; for a hard
    /// link copied up under another of its names, only note that it must be resolved again.
    pub(crate) fn set_place(&self, ino: u64, path: &Path, place: Placement) {
        let mut nodes = self.nodes.write();
        let primary = nodes.path(ino);
        if let Some(n) = nodes.get_mut(ino) {
            if primary.as_deref() == Some(path) {
                n.place = place;
            } else {
                n.place_stale = true;
            }
        }
        nodes.placed(ino);
    }

    /// Number of nodes the kernel holds (for statistics).
    pub fn node_count(&self) -> usize {
        self.nodes.read().len()
    }

    /// Reported inode number of the root directory.
    pub fn root_ino(&self) -> u64 {
        ROOT
    }

    /// The fd of the branch root of `layer`.
    pub(crate) fn root_fd(&self, layer: Layer) -> io::Result<BorrowedFd<'_>> {
        Ok(self.branch(layer)?.root())
    }

    /// The kernel forgot `n` lookups of `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.nodes.write().forget(ino, n);
    }

    /// Filesystem statistics of the upper (or top lower) branch.
    pub fn statfs(&self) -> io::Result<nix::sys::statvfs::Statvfs> {
        let layer = if self.upper.is_some() {
            Layer::Upper
        } else {
            Layer::Lower(0)
        };
        nix::sys::statvfs::fstatvfs(self.root_fd(layer)?.as_fd()).map_err(io::Error::from)
    }
}

/// Whether open `flags` may carry O_NOATIME for a read of an entry in `layer`.
fn noatime_flag(u: &Union, layer: Layer, dir: bool) -> bool {
    match layer {
        Layer::Lower(_) => true,
        Layer::Upper if u.atime.clone.is_some() => false,
        Layer::Upper => {
            let p = u.atime.policy();
            p.mode == AtimeMode::Never || (dir && p.nodiratime)
        }
    }
}

impl Union {
    /// Open `rel` in `layer` to read it for a caller (file data or a directory listing):
    /// a lower entry's atime never changes, an upper one's follows the mount's atime flags.
    pub(crate) fn open_to_read(
        &self,
        layer: Layer,
        rel: &Path,
        flags: OFlag,
    ) -> io::Result<OwnedFd> {
        let branch = match (layer, &self.atime.clone) {
            (Layer::Upper, Some((_, b))) if self.upper.is_some() => b,
            _ => self.branch(layer)?,
        };
        if !noatime_flag(self, layer, flags.contains(OFlag::O_DIRECTORY)) {
            return branch.open_at(rel, flags, 0);
        }
        match branch.open_at(rel, flags | OFlag::O_NOATIME, 0) {
            // O_NOATIME needs ownership or CAP_FOWNER: read as before then.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => branch.open_at(rel, flags, 0),
            r => r,
        }
    }
}
