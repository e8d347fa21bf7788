//! Directory merging: the listing of a directory across the upper and lower branches.

use crate::types::Layer;
use crate::union::fs::Union;
use crate::union::handles::DirEntry;
use crate::union::inode::Placement;
use crate::union::whiteout::{whited_out_name, OPAQUE_MARKER, WH_PREFIX};
use nix::dir::{Dir, Type};
use nix::fcntl::OFlag;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use strata_sys as sys;

fn type_bits(t: Option<Type>) -> Option<u32> {
    Some(match t? {
        Type::Fifo => libc::S_IFIFO,
        Type::CharacterDevice => libc::S_IFCHR,
        Type::Directory => libc::S_IFDIR,
        Type::BlockDevice => libc::S_IFBLK,
        Type::File => libc::S_IFREG,
        Type::Symlink => libc::S_IFLNK,
        Type::Socket => libc::S_IFSOCK,
    })
}

/// Raw entries of one branch directory: (name, type bits, raw inode, is a 0/0 whiteout).
fn read_branch_dir(
    u: &Union,
    layer: Layer,
    rel: &Path,
) -> io::Result<Vec<(OsString, u32, u64, bool)>> {
    let fd = u.open_to_read(layer, rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    let mut dir = Dir::from_fd(fd)?;
    let dfd = dir.as_fd().try_clone_to_owned()?;
    let mut out = Vec::new();
    for ent in dir.iter() {
        let ent = ent?;
        let name = OsStr::from_bytes(ent.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let (kind, whiteout) = match type_bits(ent.file_type()) {
            Some(libc::S_IFCHR) | None => {
                let st = crate::union::branch::stat_at(dfd.as_fd(), name)?;
                (
                    st.st_mode & libc::S_IFMT,
                    crate::union::whiteout::is_whiteout_entry(&u.meta, dfd.as_fd(), name, &st)?,
                )
            }
            Some(k) => (k, false),
        };
        out.push((name.to_os_string(), kind, ent.ino(), whiteout));
    }
    Ok(out)
}

impl Union {
    /// Read the records of the entries of `v` (a listing of directory `ino`) still unread.
    pub(crate) fn read_listed_records(&self, ino: u64, v: &mut [DirEntry]) -> io::Result<()> {
        let (path, place) = self.node_info(ino)?;
        let layers = place.dir.map(|d| d.layers).unwrap_or_default();
        for e in v.iter_mut() {
            let record = match e.unread.take() {
                None => continue,
                Some(Layer::Upper) => {
                    let ud = self.dirfd(Layer::Upper, &path)?;
                    self.meta.read(&sys::proc_path(ud.as_fd(), &e.name)?)?
                }
                Some(Layer::Lower(layer)) => {
                    let Some((_, lpath)) = layers.iter().find(|(l, _)| *l == layer) else {
                        continue;
                    };
                    let ld = self.dirfd(Layer::Lower(layer), lpath)?;
                    self.lower_meta(ld.as_fd(), &e.name)?
                }
            };
            if let Some(i) = record.and_then(|m| m.ino) {
                e.ino = i;
            }
        }
        Ok(())
    }

    /// The merged listing of directory `path` with placement `place` (no "." or "..").
    pub(crate) fn list_dir(&self, path: &Path, place: &Placement) -> io::Result<Vec<DirEntry>> {
        let mut seen: HashSet<OsString> = HashSet::new();
        let mut hidden: HashSet<OsString> = HashSet::new();
        let mut out = Vec::new();
        if place.upper && self.upper.is_some() {
            let ents = read_branch_dir(self, Layer::Upper, path)?;
            let upper_index = self.branch(Layer::Upper)?.fs_index;
            for (name, kind, raw, wh) in ents {
                if let Some(target) = whited_out_name(&name) {
                    hidden.insert(target.to_os_string());
                    continue;
                }
                if name.as_bytes().starts_with(WH_PREFIX) || name == OPAQUE_MARKER {
                    continue;
                }
                if wh {
                    hidden.insert(name);
                    continue;
                }
                // A copied-up entry reports the number its record keeps: read when a plain
                // readdir needs it (ops_readdir.rs).
                let ino = self.xino(upper_index, raw);
                seen.insert(name.clone());
                out.push(DirEntry {
                    name,
                    kind,
                    ino,
                    unread: Some(Layer::Upper),
                });
            }
        }
        if let Some(d) = &place.dir {
            for (layer, lpath) in &d.layers {
                let layer = *layer;
                let fs_index = self.branch(Layer::Lower(layer))?.fs_index;
                let ents = read_branch_dir(self, Layer::Lower(layer), lpath)?;
                let mut layer_hidden = Vec::new();
                for (name, kind, raw, wh) in ents {
                    if let Some(target) = whited_out_name(&name) {
                        layer_hidden.push(target.to_os_string());
                        continue;
                    }
                    if name.as_bytes().starts_with(WH_PREFIX) || name == OPAQUE_MARKER {
                        continue;
                    }
                    if wh {
                        layer_hidden.push(name);
                        continue;
                    }
                    if seen.contains(&name) || hidden.contains(&name) {
                        continue;
                    }
                    // A pushed-down upper's entries report the number their record keeps:
                    // read when a plain readdir needs it (ops_readdir.rs).
                    let ino = self.xino(fs_index, raw);
                    seen.insert(name.clone());
                    out.push(DirEntry {
                        name,
                        kind,
                        ino,
                        unread: Some(Layer::Lower(layer)),
                    });
                }
                hidden.extend(layer_hidden);
            }
        }
        Ok(out)
    }
}
