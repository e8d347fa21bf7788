//! The hard-link index: one whole copy per lower hard-linked inode (of any non-directory
//! kind, as overlayfs indexes them) that was copied up, so
//! that every name of the inode stays one inode in the merged view.
//!
//! The copies live in the upper itself, in the reserved directory `.wh..wh.index` at its
//! root (as aufs kept its pseudo-links in `.wh..wh.plnk`): `.wh.` names are hidden and
//! reserved in every branch, and OCI importers skip `.wh..wh.` names. Because the index
//! moves with the upper, a name of the inode found in a lower branch after the upper was
//! pushed down still resolves to the copy: a lower name found in branch j resolves to the
//! topmost index copy of its inode — the upper's, else that of the nearest lower above j.
//! An entry is named by the inode number the merged file reports, in hex; its record keeps
//! that number (`ino`), so an entry is only taken for the inode it was made for. Indexes
//! written by older strata in `WORKDIR/index/` are still read.

use crate::types::Layer;
use crate::union::attr::fmt;
use crate::union::branch::stat_at;
use crate::union::fs::Union;
use crate::union::inode::split;
use crate::union::inode::Placement;
use crate::union::owner_write::with_owner_write;
use crate::union::resolve::Resolved;
use nix::sys::stat::Mode;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_sys as sys;

/// The index directory at the root of a branch.
pub const INDEX_DIR: &str = ".wh..wh.index";

/// The index entry name of the inode reported as `ino`.
pub(crate) fn index_name(ino: u64) -> OsString {
    format!("{ino:x}").into()
}

fn is_enoent(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

impl Union {
    /// The upper's index directory, made on first use.
    pub(crate) fn upper_index_dir(&self) -> io::Result<Arc<OwnedFd>> {
        let root = self.root_fd(Layer::Upper)?;
        let made = with_owner_write(
            || root.try_clone_to_owned(),
            || {
                nix::sys::stat::mkdirat(root, INDEX_DIR, Mode::from_bits_truncate(0o700))
                    .map_err(io::Error::from)
            },
        );
        match made {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        self.dirfd(Layer::Upper, Path::new(INDEX_DIR))
    }

    /// If the lower hard link at `path` (inode `ino`) was already copied up through the
    /// upper's index (or an older mount's `WORKDIR/index`), link the copy into the upper at
    /// `path` and resolve to it.
    pub(crate) fn link_from_index(&self, path: &Path, ino: u64) -> io::Result<Option<Resolved>> {
        let iname = index_name(ino);
        let mut found: Option<Arc<OwnedFd>> = None;
        match self.dirfd(Layer::Upper, Path::new(INDEX_DIR)) {
            Ok(d) => match stat_at(d.as_fd(), &iname) {
                Ok(_) => found = Some(d),
                Err(e) if is_enoent(&e) => {}
                Err(e) => return Err(e),
            },
            Err(e) if is_enoent(&e) => {}
            Err(e) => return Err(e),
        }
        let index = match found {
            Some(d) => d,
            None => {
                let work = self.work()?;
                match stat_at(work.index.as_fd(), &iname) {
                    Ok(_) => Arc::new(work.index.try_clone()?),
                    Err(e) if is_enoent(&e) => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
        };
        let (ppath, name) = split(path)?;
        self.ensure_upper_dir_path(&ppath)?;
        let pd = self.dirfd(Layer::Upper, &ppath)?;
        match nix::unistd::linkat(
            index.as_fd(),
            iname.as_os_str(),
            pd.as_fd(),
            name.as_os_str(),
            nix::fcntl::AtFlags::empty(),
        ) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let st = stat_at(pd.as_fd(), &name)?;
        let meta = self.meta.read(&sys::proc_path(pd.as_fd(), &name)?)?;
        Ok(Some(Resolved {
            place: Placement {
                kind: fmt(&st),
                upper: true,
                lower: None,
                dir: None,
                redirected: false,
                delta: false,
            },
            ino: meta.as_ref().and_then(|m| m.ino).unwrap_or(ino),
            st,
            meta,
        }))
    }

    /// The index copy of inode `ino` kept by the nearest lower branch above `layer` (a
    /// pushed-down upper that copied it up), resolved as a lower file.
    pub(crate) fn lower_index_entry(&self, layer: usize, ino: u64) -> io::Result<Option<Resolved>> {
        let iname = index_name(ino);
        for l in 0..layer {
            let d = match self.dirfd(Layer::Lower(l), Path::new(INDEX_DIR)) {
                Ok(d) => d,
                Err(e) if is_enoent(&e) => continue,
                Err(e) => return Err(e),
            };
            let st = match stat_at(d.as_fd(), &iname) {
                Ok(st) => st,
                Err(e) if is_enoent(&e) => continue,
                Err(e) => return Err(e),
            };
            let meta = self.lower_meta(d.as_fd(), OsStr::new(&iname))?;
            if fmt(&st) == libc::S_IFDIR || meta.as_ref().and_then(|m| m.ino) != Some(ino) {
                tracing::warn!(layer = l, entry = ?iname, "an index entry that is not the copy of its inode; ignored");
                continue;
            }
            return Ok(Some(Resolved {
                place: Placement {
                    kind: fmt(&st),
                    upper: false,
                    lower: Some((l, PathBuf::from(INDEX_DIR).join(&iname))),
                    dir: None,
                    redirected: false,
                    delta: false,
                },
                st,
                ino,
                meta,
            }));
        }
        Ok(None)
    }
}
