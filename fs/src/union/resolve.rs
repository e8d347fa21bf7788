//! Name resolution across branches: which branch serves a name, with whiteouts, opaque
//! directories, redirects and the hard-link index applied.

use crate::types::{errno, Layer};
use crate::union::attr::{fmt, is_dir, Attr};
use crate::union::branch::stat_at;
use crate::union::fs::Union;
use crate::union::inode::{join, DirInfo, Placement, ROOT};
use crate::union::meta::Meta;
use crate::union::whiteout::{
    dir_is_opaque, has_opaque_marker, has_whiteout_file, is_internal_name, is_whiteout_entry,
};
use nix::sys::stat::FileStat;
use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use strata_sys as sys;

/// The outcome of resolving one name.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// Where it lives.
    pub place: Placement,
    /// Stat of the entry that supplies the attributes.
    pub st: FileStat,
    /// Reported inode number.
    pub ino: u64,
    /// Upper metadata, when the entry is in the upper.
    pub meta: Option<Meta>,
}

fn is_enoent(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

/// Check a name the caller gave us.
pub(crate) fn check_name(name: &OsStr) -> io::Result<()> {
    if name.len() > 255 {
        return Err(errno(libc::ENAMETOOLONG));
    }
    if name.is_empty() || name == "." || name == ".." || name.as_encoded_bytes().contains(&b'/') {
        return Err(errno(libc::EINVAL));
    }
    Ok(())
}

impl Union {
    /// Resolve `name` in the directory `parent` (merged path `ppath`, placement `pplace`).
    pub(crate) fn resolve_child(
        &self,
        ppath: &Path,
        pplace: &Placement,
        name: &OsStr,
    ) -> io::Result<Resolved> {
        check_name(name)?;
        if is_internal_name(name) {
            return Err(errno(libc::ENOENT));
        }
        let path = join(ppath, name);
        if pplace.upper && self.upper.is_some() {
            let ud = self.dirfd(Layer::Upper, ppath)?;
            match stat_at(ud.as_fd(), name) {
                Ok(st) if is_whiteout_entry(&self.meta, ud.as_fd(), name, &st)? => {
                    return Err(errno(libc::ENOENT))
                }
                Ok(st) => return self.resolved_upper(&path, pplace, name, st),
                Err(e) if is_enoent(&e) => {
                    if has_whiteout_file(ud.as_fd(), name)? {
                        return Err(errno(libc::ENOENT));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        match &pplace.dir {
            Some(pdir) => self.resolve_in_lowers(&path, pdir, name, true),
            None => Err(errno(libc::ENOENT)),
        }
    }

    /// Whether `name` in the directory with placement `pplace` would show a lower entry
    /// if the upper had nothing there (so removing it from the upper needs a whiteout).
    pub(crate) fn lower_visible(&self, pplace: &Placement, name: &OsStr) -> io::Result<bool> {
        let Some(pdir) = &pplace.dir else {
            return Ok(false);
        };
        match self.resolve_in_lowers(Path::new(""), pdir, name, false) {
            Ok(_) => Ok(true),
            Err(e) if is_enoent(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Resolve `name` in the lower part `pdir` of a directory; `use_index` lets a copied-up
    /// lower hard link resolve to its upper copy.
    fn resolve_in_lowers(
        &self,
        path: &Path,
        pdir: &DirInfo,
        name: &OsStr,
        use_index: bool,
    ) -> io::Result<Resolved> {
        for (k, (layer, ppath)) in pdir.layers.iter().enumerate() {
            let layer = *layer;
            let lpath = join(ppath, name);
            let d = self.dirfd(Layer::Lower(layer), ppath)?;
            match stat_at(d.as_fd(), name) {
                Ok(st) if is_whiteout_entry(&self.meta, d.as_fd(), name, &st)? => {
                    return Err(errno(libc::ENOENT))
                }
                Ok(st) if is_dir(&st) => {
                    let candidates: Vec<(usize, PathBuf)> = pdir.layers[k..]
                        .iter()
                        .map(|(l, p)| (*l, join(p, name)))
                        .collect();
                    let layers = self.lower_dir_chain(candidates)?;
                    let meta = self.lower_meta_st(d.as_fd(), name, &st)?;
                    let ino = match meta.as_ref().and_then(|m| m.ino) {
                        Some(i) => i,
                        None => self.layer_ino(Layer::Lower(layer), &st)?,
                    };
                    return Ok(Resolved {
                        place: Placement {
                            kind: libc::S_IFDIR,
                            upper: false,
                            lower: None,
                            dir: Some(DirInfo { layers }),
                            redirected: false,
                            delta: false,
                        },
                        st,
                        ino,
                        meta: None,
                    });
                }
                Ok(st) => {
                    let meta = self.lower_meta_st(d.as_fd(), name, &st)?;
                    return self.resolved_lower(path, layer, lpath, st, meta, use_index);
                }
                Err(e) if is_enoent(&e) => {
                    if has_whiteout_file(d.as_fd(), name)? {
                        return Err(errno(libc::ENOENT));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(errno(libc::ENOENT))
    }

    /// The strata record of `name` in a lower directory (either namespace).
    pub(crate) fn lower_meta(
        &self,
        dir: std::os::fd::BorrowedFd<'_>,
        name: &OsStr,
    ) -> io::Result<Option<Meta>> {
        Ok(self
            .meta
            .lower_marks(&sys::proc_path(dir, name)?, false)?
            .meta)
    }

    /// [`Union::lower_meta`] of an entry stat'ed as `st`: none without a read when it is
    /// known to carry nothing; a non-directory found so is remembered (a directory only by
    /// [`Union::lower_dir_marks`], which also looks for its opaque marks).
    pub(crate) fn lower_meta_st(
        &self,
        dir: std::os::fd::BorrowedFd<'_>,
        name: &OsStr,
        st: &FileStat,
    ) -> io::Result<Option<Meta>> {
        if self.plain_lowers.contains(st) {
            return Ok(None);
        }
        let meta = self.lower_meta(dir, name)?;
        if meta.is_none() && !is_dir(st) {
            self.plain_lowers.insert(st);
        }
        Ok(meta)
    }

    /// Whether the lower directory `name` in `pd` (at `lpath` in `layer`, stat'ed as `st`)
    /// is opaque, and its redirect: one stat of the marker file and one llistxattr, none
    /// once it is known to carry nothing.
    fn lower_dir_marks(
        &self,
        pd: std::os::fd::BorrowedFd<'_>,
        name: &OsStr,
        layer: usize,
        lpath: &Path,
        st: &FileStat,
    ) -> io::Result<(bool, Option<PathBuf>)> {
        if self.plain_lowers.contains(st) {
            return Ok((false, None));
        }
        let d = self.dirfd(Layer::Lower(layer), lpath)?;
        if has_opaque_marker(d.as_fd())? {
            return Ok((true, None));
        }
        let marks = self.meta.lower_marks(&sys::proc_path(pd, name)?, true)?;
        if marks.opaque {
            return Ok((true, None));
        }
        if marks.meta.is_none() {
            self.plain_lowers.insert(st);
        }
        Ok((false, marks.meta.and_then(|m| m.redirect)))
    }

    /// Of the (lower branch, path) `candidates`, top first, those that hold a directory,
    /// stopping at a whiteout, a non-directory or an opaque directory. A directory with a
    /// redirect sends the lookup of every branch below it to the redirect's path.
    pub(crate) fn lower_dir_chain(
        &self,
        candidates: Vec<(usize, PathBuf)>,
    ) -> io::Result<Vec<(usize, PathBuf)>> {
        let mut out = Vec::new();
        // One branch per step, top down; a redirect hands the rest to a walk strictly below.
        for (layer, lpath) in candidates {
            let (parent, name) = match (lpath.parent(), lpath.file_name()) {
                (Some(p), Some(n)) => (p, n),
                _ => {
                    // A branch root is always a directory.
                    out.push((layer, lpath));
                    continue;
                }
            };
            let pd = match self.dirfd(Layer::Lower(layer), parent) {
                Ok(fd) => fd,
                Err(e) if is_enoent(&e) => continue,
                Err(e) => return Err(e),
            };
            match stat_at(pd.as_fd(), name) {
                Ok(st) if is_dir(&st) => {
                    let (opaque, redirect) =
                        self.lower_dir_marks(pd.as_fd(), name, layer, &lpath, &st)?;
                    out.push((layer, lpath));
                    if opaque {
                        break;
                    }
                    if let Some(r) = redirect {
                        // The layers below hold it where their merged namespace has /R.
                        out.extend(self.lower_walk(layer + 1, &r)?);
                        break;
                    }
                }
                Ok(_) => break,
                Err(e) if is_enoent(&e) => {
                    if has_whiteout_file(pd.as_fd(), name)? {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The directory at `/path` in the merged namespace of the lower branches from `start`
    /// down (where a redirect written in branch `start - 1` names): each component is
    /// looked up as a name in its merged parent, so an opaque directory or a whiteout on
    /// the way hides the branches below it, and a directory redirected on the way (moved at
    /// an earlier level) is followed, as overlayfs resolves a redirect.
    pub(crate) fn lower_walk(
        &self,
        start: usize,
        path: &Path,
    ) -> io::Result<Vec<(usize, PathBuf)>> {
        let mut chain: Vec<(usize, PathBuf)> = (start..self.lowers.len())
            .map(|l| (l, PathBuf::new()))
            .collect();
        for comp in path.components() {
            let std::path::Component::Normal(name) = comp else {
                continue;
            };
            if chain.is_empty() {
                break;
            }
            let candidates = chain.iter().map(|(l, p)| (*l, join(p, name))).collect();
            chain = self.lower_dir_chain(candidates)?;
        }
        Ok(chain)
    }

    /// The path a redirect written now for the directory at merged `path` names: its path
    /// in the merged namespace of the lowers, that is `path` with the nearest ancestor
    /// renamed in the upper replaced by that ancestor's own redirect.
    pub(crate) fn lower_ns_path(&self, path: &Path) -> io::Result<PathBuf> {
        let mut out = PathBuf::new();
        let mut cur = PathBuf::new();
        let comps: Vec<&OsStr> = path.iter().collect();
        for (i, name) in comps.iter().enumerate() {
            let parent = cur.clone();
            cur.push(name);
            out.push(name);
            if i + 1 == comps.len() {
                break;
            }
            let ud = match self.dirfd(Layer::Upper, &parent) {
                Ok(d) => d,
                Err(e) if is_enoent(&e) => continue,
                Err(e) => return Err(e),
            };
            match stat_at(ud.as_fd(), name) {
                Ok(st) if is_dir(&st) => {}
                Ok(_) => continue,
                Err(e) if is_enoent(&e) => continue,
                Err(e) => return Err(e),
            }
            if let Some(r) = self
                .meta
                .read(&sys::proc_path(ud.as_fd(), name)?)?
                .and_then(|m| m.redirect)
            {
                out = r;
            }
        }
        Ok(out)
    }

    /// Resolution of an entry found in the upper.
    fn resolved_upper(
        &self,
        path: &Path,
        pplace: &Placement,
        name: &OsStr,
        st: FileStat,
    ) -> io::Result<Resolved> {
        let ppath = path.parent().unwrap_or(Path::new(""));
        let ud = self.dirfd(Layer::Upper, ppath)?;
        let meta = self
            .meta
            .read(&sys::proc_path(ud.as_fd(), name)?)?
            .unwrap_or_default();
        let ino = match meta.ino {
            Some(i) => i,
            None => self.layer_ino(Layer::Upper, &st)?,
        };
        let mut place = Placement {
            kind: fmt(&st),
            upper: true,
            lower: None,
            dir: None,
            redirected: meta.redirect.is_some(),
            delta: meta.delta.is_some(),
        };
        if is_dir(&st) {
            let d = self.dirfd(Layer::Upper, path)?;
            if !dir_is_opaque(d.as_fd())? {
                place.dir = match (&meta.redirect, &pplace.dir) {
                    (Some(r), _) => Some(DirInfo {
                        layers: self.lower_walk(0, r)?,
                    }),
                    (None, Some(pdir)) => Some(DirInfo {
                        layers: self.lower_dir_chain(
                            pdir.layers
                                .iter()
                                .map(|(l, p)| (*l, join(p, name)))
                                .collect(),
                        )?,
                    }),
                    (None, None) => None,
                };
            }
        } else if let Some((below, p)) = &meta.data {
            let layer = &self.data_layer(Layer::Upper, *below, path)?;
            if let (Some(ino), Some(ident)) = (meta.ino, meta.ident) {
                let fs_index = self.branch(Layer::Lower(*layer))?.fs_index;
                let origin = self.xino(fs_index, ident.ino);
                // An origin that is itself a strata entry reports the number its record
                // keeps (a delta over a pushed-down upper's copy).
                if ino != origin && self.recorded_ino(*layer, p).ok().flatten() != Some(ino) {
                    tracing::error!(path = %path.display(), ino, origin, "strata record names an inode number that is not its lower file's; run `strata fsck`");
                    return Err(errno(libc::EIO));
                }
            }
            place.lower = Some((*layer, p.clone()));
        }
        Ok(Resolved {
            place,
            st,
            ino,
            meta: Some(meta),
        })
    }

    /// The inode number the record of the entry at `lpath` in lower `layer` keeps.
    fn recorded_ino(&self, layer: usize, lpath: &Path) -> io::Result<Option<u64>> {
        let (Some(parent), Some(name)) = (lpath.parent(), lpath.file_name()) else {
            return Ok(None);
        };
        let d = self.dirfd(Layer::Lower(layer), parent)?;
        Ok(self.lower_meta(d.as_fd(), name)?.and_then(|m| m.ino))
    }

    /// Resolution of a non-directory found in lower `layer` (with its strata record, when
    /// the branch is a pushed-down upper: the inode number and link count it keeps; its
    /// data is found through the chain at open); a lower hard link whose inode was already
    /// copied up resolves to its index copy, linked into the upper here.
    fn resolved_lower(
        &self,
        path: &Path,
        layer: usize,
        lpath: PathBuf,
        st: FileStat,
        meta: Option<Meta>,
        use_index: bool,
    ) -> io::Result<Resolved> {
        let ino = match meta.as_ref().and_then(|m| m.ino) {
            Some(i) => i,
            None => self.layer_ino(Layer::Lower(layer), &st)?,
        };
        if use_index && st.st_nlink > 1 && !is_dir(&st) {
            if self.writable() {
                if let Some(r) = self.link_from_index(path, ino)? {
                    return Ok(r);
                }
            }
            // Copied up by a pushed-down upper above this branch: its index holds the copy.
            if let Some(r) = self.lower_index_entry(layer, ino)? {
                return Ok(r);
            }
        }
        Ok(Resolved {
            place: Placement {
                kind: fmt(&st),
                upper: false,
                lower: Some((layer, lpath)),
                dir: None,
                redirected: false,
                delta: false,
            },
            st,
            ino,
            meta,
        })
    }

    /// Resolve a node's current state from scratch by its path.
    pub(crate) fn resolve_path(&self, path: &Path) -> io::Result<Resolved> {
        let mut place = self.root_placement();
        let mut cur = PathBuf::new();
        let mut last = None;
        for comp in path.iter() {
            let r = self.resolve_child(&cur, &place, comp)?;
            cur.push(comp);
            place = r.place.clone();
            last = Some(r);
        }
        match last {
            Some(r) => Ok(r),
            None => self.resolve_root(),
        }
    }

    /// Placement of the root directory.
    pub(crate) fn root_placement(&self) -> Placement {
        self.nodes
            .read()
            .get(ROOT)
            .map(|n| n.place.clone())
            .unwrap_or_default()
    }

    /// Resolution of the root directory.
    pub(crate) fn resolve_root(&self) -> io::Result<Resolved> {
        let place = self.root_placement();
        let layer = if self.upper.is_some() {
            Layer::Upper
        } else {
            Layer::Lower(0)
        };
        let st = self.branch(layer)?.stat(Path::new(""))?;
        Ok(Resolved {
            place,
            st,
            ino: ROOT,
            meta: None,
        })
    }

    /// Attributes from a resolution, fixed up for metadata-only copies.
    pub(crate) fn resolved_attr(&self, r: &Resolved) -> Attr {
        let mut a = self.attr_from(&r.st, r.ino);
        self.fix_merged_dir_nlink(&mut a, &r.place);
        if let Some(n) = r.meta.as_ref().and_then(|m| m.nlink) {
            a.nlink = n.min(u64::from(u32::MAX)) as u32;
        }
        if r.place.metacopy() {
            if let Some((layer, p)) = &r.place.lower {
                if let Ok(b) = self.lower_data_blocks(*layer, p) {
                    a.blocks = b;
                }
            }
        } else if let (false, Some(m), Some((layer, p))) = (r.place.upper, &r.meta, &r.place.lower)
        {
            // A pushed-down upper's metadata-only copy: the blocks of the file it names.
            if let (Some((below, target)), None) = (&m.data, &m.delta) {
                let data = self.data_layer(Layer::Lower(*layer), *below, p);
                if let Ok(b) = data.and_then(|l| self.lower_data_blocks(l, target)) {
                    a.blocks = b;
                }
            }
        }
        a
    }
}
