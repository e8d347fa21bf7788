//! The inode table: what the kernel holds references to, keyed by reported st_ino.
//!
//! fuser uses st_ino as the FUSE node id, so hard links share one node, as they share one
//! kernel inode. A node remembers the names it was found under (aliases) and where its
//! content lives; it stays while the kernel holds lookups on it or while it is the parent
//! of a node that stays.

use smallvec::{smallvec, SmallVec};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Node id of the root directory.
pub const ROOT: u64 = 1;

/// Where the lower part of a directory is found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirInfo {
    /// Lower branches holding the directory, top first, each with the path it is at there
    /// (a redirect in a layer, upper or lower, moves the path of the layers below it).
    pub layers: Vec<(usize, PathBuf)>,
}

impl DirInfo {
    /// The path in the topmost lower branch holding the directory (what a redirect
    /// written above it names).
    pub fn lower_path(&self) -> Option<&Path> {
        self.layers.first().map(|(_, p)| p.as_path())
    }

    /// The lower branches, top first.
    pub fn layer_ids(&self) -> Vec<usize> {
        self.layers.iter().map(|(l, _)| *l).collect()
    }
}

/// Where a merged entry lives right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// S_IFMT bits.
    pub kind: u32,
    /// Present in the upper branch at the node's path.
    pub upper: bool,
    /// For non-directories not (fully) in the upper: the lower branch and path of the data.
    pub lower: Option<(usize, PathBuf)>,
    /// For directories: the lower part; None for a pure-upper or opaque directory.
    pub dir: Option<DirInfo>,
    /// Upper directory carries a redirect.
    pub redirected: bool,
    /// Upper file is a block-level delta over `lower`.
    pub delta: bool,
}

impl Placement {
    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }

    /// Upper entry whose data is still in a lower branch (metadata-only copy-up).
    pub fn metacopy(&self) -> bool {
        self.upper && self.lower.is_some() && !self.is_dir()
    }
}

/// The names of a node: one inline (a hard link's further names spill to the heap).
pub type Aliases = SmallVec<[(u64, Box<OsStr>); 1]>;

/// One inode the kernel knows.
#[derive(Debug)]
pub struct Node {
    /// (parent node, name) pairs this inode was found under; the first is used for paths.
    pub aliases: Aliases,
    /// Kernel lookup count.
    pub lookups: u64,
    /// Number of aliases of other nodes naming this node as parent.
    pub children: u64,
    /// Current placement.
    pub place: Placement,
    /// Removed from the namespace while still open or referenced.
    pub unlinked: bool,
    /// The placement describes a name that is no longer the first alias: resolve again.
    pub place_stale: bool,
    /// Its last name is being removed right now: the number may be reused any moment.
    pub dying: bool,
    /// FUSE generation: changes when an inode number is reused for a new file, so the
    /// kernel drops an old inode it may still cache under the same number.
    pub generation: u64,
    /// The table's clock when `place` was last set by the operation that changed it (see
    /// [`NodeTable::clock`]).
    pub place_at: u64,
    /// An O_PATH fd on the upper inode of a node that lost its last name while the kernel
    /// still held it. It keeps the backing inode, and so its number, from being reused
    /// until the kernel forgets the node (overlayfs holds the real inode the same way): a
    /// new file reported under the number would make the kernel's old inode bad, and a
    /// racing stat or open of the removed entry would fail with EIO instead of ENOENT.
    pub pin: Option<std::os::fd::OwnedFd>,
}

/// All nodes.
///
/// Boxed: the kernel may cache hundreds of thousands of inodes, and a table of inline nodes
/// kept a slot of the node's full size for every empty bucket (a quarter to a half of them)
/// and held the old and the new table at once while growing (bench: memory).
#[derive(Debug, Default)]
pub struct NodeTable {
    nodes: HashMap<u64, Box<Node>>,
    next_generation: u64,
    /// Counts placement changes made by the operations that move entries (copy-up, rename,
    /// create). A placement resolved from the branches is only as new as the clock read
    /// before resolving: one that started before a copy-up finished must not undo it.
    clock: u64,
}

impl NodeTable {
    /// A table holding only the root.
    pub fn with_root(place: Placement) -> NodeTable {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Box::new(Node {
                aliases: SmallVec::new(),
                lookups: 1,
                children: 0,
                place,
                unlinked: false,
                place_stale: false,
                dying: false,
                generation: 0,
                place_at: 0,
                pin: None,
            }),
        );
        NodeTable {
            nodes,
            next_generation: 1,
            clock: 0,
        }
    }

    /// The placement clock: read it before resolving a name, pass it to [`Self::found`]
    /// or [`Self::resolved`].
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// `ino`'s placement was just changed by the operation that moved it: newer than any
    /// resolution under way.
    pub fn placed(&mut self, ino: u64) {
        self.clock += 1;
        let now = self.clock;
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.place_at = now;
        }
    }

    /// Store `place`, resolved from the branches after reading the clock `seen`, unless an
    /// operation placed the node since; false if it did (the node's placement is newer).
    pub fn resolved(&mut self, ino: u64, place: Placement, seen: u64) -> bool {
        match self.nodes.get_mut(&ino) {
            Some(n) if n.place_at <= seen => {
                n.place = place;
                n.place_stale = false;
                true
            }
            _ => false,
        }
    }

    /// The node for `ino`.
    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino).map(|n| &**n)
    }

    /// The node for `ino`, mutable.
    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.nodes.get_mut(&ino).map(|n| &mut **n)
    }

    /// Number of nodes (for statistics and tests).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Merged path of a node, relative to the root ("" for the root); None if unreachable.
    pub fn path(&self, ino: u64) -> Option<PathBuf> {
        let mut parts: Vec<&OsStr> = Vec::new();
        let mut cur = ino;
        let mut depth = 0;
        while cur != ROOT {
            let node = self.nodes.get(&cur)?;
            let (parent, name) = node.aliases.first()?;
            parts.push(name);
            cur = *parent;
            depth += 1;
            if depth > 4096 {
                return None;
            }
        }
        let mut p = PathBuf::new();
        for part in parts.iter().rev() {
            p.push(part);
        }
        Some(p)
    }

    /// Record a lookup of (`parent`, `name`) that found `ino` with placement `place`;
    /// returns the generation to report. `seen`: the clock read before `place` was resolved
    /// from the branches; None when the caller made the entry itself (create, mkdir, link).
    pub fn found(
        &mut self,
        parent: u64,
        name: &OsStr,
        ino: u64,
        place: Placement,
        count: bool,
        seen: Option<u64>,
    ) -> u64 {
        let mut new_alias = false;
        let mut moved = false;
        let fresh = self.next_generation;
        let generation;
        if seen.is_none() {
            self.clock += 1;
        }
        let now = self.clock;
        match self.nodes.get_mut(&ino) {
            Some(node) => {
                let reused = node.unlinked || node.dying;
                if reused {
                    // The number now names a different file.
                    node.generation = fresh;
                    node.dying = false;
                    self.next_generation += 1;
                }
                generation = node.generation;
                // The name just looked up is the surest path: put it first. `place` is
                // where this name leads (a hard link's names may live in different
                // branches), so it only describes the node with this name first.
                match node
                    .aliases
                    .iter()
                    .position(|(p, n)| *p == parent && **n == *name)
                {
                    Some(0) => {}
                    Some(i) => {
                        let a = node.aliases.remove(i);
                        node.aliases.insert(0, a);
                        moved = true;
                    }
                    None => {
                        node.aliases.insert(0, (parent, Box::from(name)));
                        new_alias = true;
                        moved = true;
                    }
                }
                match seen {
                    None => {
                        node.place = place;
                        node.place_stale = false;
                        node.place_at = now;
                    }
                    // A copy-up that finished after this lookup began placed it: keep that
                    // (resolved again when it was made under the name that led before).
                    Some(seen) if !reused && node.place_at > seen => {
                        if moved {
                            node.place_stale = true;
                        }
                    }
                    Some(_) => {
                        node.place = place;
                        node.place_stale = false;
                    }
                }
                node.unlinked = false;
                if count {
                    node.lookups += 1;
                }
            }
            None => {
                self.nodes.insert(
                    ino,
                    Box::new(Node {
                        aliases: smallvec![(parent, Box::from(name))],
                        lookups: u64::from(count),
                        children: 0,
                        place,
                        unlinked: false,
                        place_stale: false,
                        dying: false,
                        generation: fresh,
                        place_at: now,
                        pin: None,
                    }),
                );
                self.next_generation += 1;
                generation = fresh;
                new_alias = true;
            }
        }
        if new_alias {
            if let Some(p) = self.nodes.get_mut(&parent) {
                p.children += 1;
            }
        }
        generation
    }

    /// Mark `ino` as about to lose its last name (or clear the mark when that failed).
    pub fn set_dying(&mut self, ino: u64, dying: bool) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.dying = dying;
        }
    }

    /// Whether the kernel holds lookups on `ino`.
    pub fn referenced(&self, ino: u64) -> bool {
        self.nodes.get(&ino).is_some_and(|n| n.lookups > 0)
    }

    /// Keep `fd` (the backing inode of `ino`, just removed) open while the node stays.
    pub fn pin(&mut self, ino: u64, fd: std::os::fd::OwnedFd) {
        if let Some(n) = self.nodes.get_mut(&ino).filter(|n| n.unlinked) {
            n.pin = Some(fd);
        }
    }

    /// Drop the alias (`parent`, `name`) of `ino`; the node is unlinked when none is left.
    pub fn remove_alias(&mut self, ino: u64, parent: u64, name: &OsStr) {
        let removed = match self.nodes.get_mut(&ino) {
            Some(node) => {
                let before = node.aliases.len();
                let was_first = node
                    .aliases
                    .first()
                    .is_some_and(|(p, n)| *p == parent && **n == *name);
                node.aliases
                    .retain(|(p, n)| !(*p == parent && **n == *name));
                if node.aliases.is_empty() {
                    node.unlinked = true;
                } else if was_first {
                    // Another name of a hard link now leads; it may live elsewhere.
                    node.place_stale = true;
                }
                before != node.aliases.len()
            }
            None => false,
        };
        if removed {
            self.release_child(parent);
            self.maybe_drop(ino);
        }
    }

    /// Move the alias (`parent`, `name`) of `ino` to (`newparent`, `newname`).
    pub fn move_alias(
        &mut self,
        ino: u64,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
    ) {
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        let pos = node
            .aliases
            .iter()
            .position(|(p, n)| *p == parent && **n == *name);
        match pos {
            Some(i) => {
                node.aliases.remove(i);
                node.aliases.insert(0, (newparent, Box::from(newname)));
            }
            None => {
                node.aliases.insert(0, (newparent, Box::from(newname)));
                if let Some(p) = self.nodes.get_mut(&newparent) {
                    p.children += 1;
                }
                return;
            }
        }
        if parent != newparent {
            if let Some(p) = self.nodes.get_mut(&newparent) {
                p.children += 1;
            }
            self.release_child(parent);
        }
    }

    /// The kernel forgot `n` lookups of `ino`.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        self.maybe_drop(ino);
    }

    fn release_child(&mut self, parent: u64) {
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children = p.children.saturating_sub(1);
        }
        self.maybe_drop(parent);
    }

    /// Remove `ino` (and then possibly its parents) once nothing refers to it.
    fn maybe_drop(&mut self, ino: u64) {
        let mut cur = ino;
        loop {
            if cur == ROOT {
                return;
            }
            let Some(node) = self.nodes.get(&cur) else {
                return;
            };
            if node.lookups > 0 || node.children > 0 {
                return;
            }
            let Some(node) = self.nodes.remove(&cur) else {
                return;
            };
            let mut next = None;
            for (p, _) in &node.aliases {
                if let Some(pn) = self.nodes.get_mut(p) {
                    pn.children = pn.children.saturating_sub(1);
                    if pn.children == 0 && pn.lookups == 0 {
                        next = Some(*p);
                    }
                }
            }
            match next {
                Some(n) => cur = n,
                None => return,
            }
        }
    }
}

/// Path of `name` inside the directory at `dir`.
pub fn join(dir: &Path, name: &OsStr) -> PathBuf {
    if dir.as_os_str().is_empty() {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

/// Split a merged path into parent path and final name.
pub(crate) fn split(path: &Path) -> std::io::Result<(PathBuf, OsString)> {
    match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => Ok((p.to_path_buf(), n.to_os_string())),
        _ => Err(crate::types::errno(libc::EINVAL)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(kind: u32) -> Placement {
        Placement {
            kind,
            ..Placement::default()
        }
    }

    #[test]
    fn paths_aliases_and_forget() {
        let mut t = NodeTable::with_root(place(libc::S_IFDIR));
        t.found(ROOT, OsStr::new("a"), 10, place(libc::S_IFDIR), true, None);
        t.found(10, OsStr::new("f"), 11, place(libc::S_IFREG), true, None);
        assert_eq!(t.path(11), Some(PathBuf::from("a/f")));
        t.move_alias(11, 10, OsStr::new("f"), ROOT, OsStr::new("g"));
        assert_eq!(t.path(11), Some(PathBuf::from("g")));
        // The directory is kept while the kernel holds it.
        t.forget(10, 1);
        assert!(t.get(10).is_none());
        t.remove_alias(11, ROOT, OsStr::new("g"));
        assert!(t.get(11).unwrap().unlinked);
        t.forget(11, 1);
        assert!(t.get(11).is_none());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_lookup_older_than_a_copy_up_does_not_undo_it() {
        let mut t = NodeTable::with_root(place(libc::S_IFDIR));
        t.found(ROOT, OsStr::new("f"), 7, place(libc::S_IFREG), true, None);
        let seen = t.clock();
        let upper = Placement {
            upper: true,
            ..place(libc::S_IFREG)
        };
        t.get_mut(7).unwrap().place = upper.clone();
        t.placed(7);
        // A lookup that resolved the lower file before the copy-up finished.
        t.found(
            ROOT,
            OsStr::new("f"),
            7,
            place(libc::S_IFREG),
            true,
            Some(seen),
        );
        assert_eq!(t.get(7).unwrap().place, upper);
        assert!(!t.resolved(7, place(libc::S_IFREG), seen));
        assert_eq!(t.get(7).unwrap().place, upper);
        // One that began after it is applied.
        let later = t.clock();
        assert!(t.resolved(7, place(libc::S_IFLNK), later));
        assert_eq!(t.get(7).unwrap().place.kind, libc::S_IFLNK);
    }

    #[test]
    fn a_lookup_under_a_later_name_leads_with_its_placement() {
        let mut t = NodeTable::with_root(place(libc::S_IFDIR));
        let lower = place(libc::S_IFREG);
        let upper = Placement {
            upper: true,
            ..place(libc::S_IFREG)
        };
        t.found(
            ROOT,
            OsStr::new("f"),
            7,
            lower.clone(),
            true,
            Some(t.clock()),
        );
        t.found(ROOT, OsStr::new("g"), 7, lower, true, Some(t.clock()));
        assert_eq!(t.path(7), Some(PathBuf::from("g")));
        // f looked up again leads to an upper copy: the node's path must be f.
        t.found(
            ROOT,
            OsStr::new("f"),
            7,
            upper.clone(),
            true,
            Some(t.clock()),
        );
        assert_eq!(t.path(7), Some(PathBuf::from("f")));
        assert_eq!(t.get(7).unwrap().place, upper);
    }

    #[test]
    fn parent_kept_while_child_lives() {
        let mut t = NodeTable::with_root(place(libc::S_IFDIR));
        t.found(ROOT, OsStr::new("d"), 5, place(libc::S_IFDIR), true, None);
        t.found(5, OsStr::new("x"), 6, place(libc::S_IFREG), true, None);
        t.forget(5, 1);
        assert_eq!(t.path(6), Some(PathBuf::from("d/x")));
        t.forget(6, 1);
        assert_eq!(t.len(), 1);
    }
}
