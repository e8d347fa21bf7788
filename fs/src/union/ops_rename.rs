//! rename: moving a name within the union (copy-up of the source, whiteouts, redirects).

use crate::types::{errno, Layer};
use crate::union::branch::open_in;
use crate::union::fs::Union;
use crate::union::inode::split;
use crate::union::inode::{join, Placement};
use crate::union::ops_dir::is_enoent;
use crate::union::resolve::{check_name, Resolved};
use crate::union::whiteout::{create_whiteout, is_internal_name, make_opaque, remove_whiteout};
use nix::fcntl::{OFlag, RenameFlags};
use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use strata_sys as sys;

impl Union {
    /// Get an entry ready to move in the upper: copy it up and, for a directory, record a
    /// redirect to its lower contents or make it opaque where it lands over lower entries.
    fn prepare_move(
        &self,
        path: &Path,
        r: &Resolved,
        dest_place: &Placement,
        dest_name: &OsStr,
    ) -> io::Result<()> {
        self.copy_up_at(path, r, false)?;
        if !r.place.is_dir() {
            return Ok(());
        }
        let (ppath, name) = split(path)?;
        let pd = self.dirfd(Layer::Upper, &ppath)?;
        match &r.place.dir {
            Some(d) if !d.layers.is_empty() && !r.place.redirected => {
                let p = sys::proc_path(pd.as_fd(), &name)?;
                let mut m = self.meta.read(&p)?.unwrap_or_default();
                m.ino.get_or_insert(r.ino);
                m.redirect = Some(self.lower_ns_path(path)?);
                self.meta.write(&p, &m)?;
            }
            Some(d) if !d.layers.is_empty() => {}
            _ => {
                if self.lower_visible(dest_place, dest_name)? {
                    let d = open_in(pd.as_fd(), &name, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?;
                    make_opaque(d)?;
                }
            }
        }
        Ok(())
    }

    /// rename with RENAME_NOREPLACE / RENAME_EXCHANGE semantics.
    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> io::Result<()> {
        check_name(newname)?;
        if is_internal_name(newname) {
            return Err(errno(libc::EINVAL));
        }
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        if flags & !(libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE) != 0 || (exchange && noreplace)
        {
            return Err(errno(libc::EINVAL));
        }
        let (ppath, pplace) = self.node_info(parent)?;
        let (nppath, npplace) = self.node_info(newparent)?;
        let src = self.resolve_child(&ppath, &pplace, name)?;
        let mut dst = match self.resolve_child(&nppath, &npplace, newname) {
            Ok(r) => Some(r),
            Err(e) if is_enoent(&e) => None,
            Err(e) => return Err(e),
        };
        let spath = join(&ppath, name);
        let dpath = join(&nppath, newname);
        match &dst {
            Some(d) => {
                if noreplace {
                    return Err(errno(libc::EEXIST));
                }
                if d.ino == src.ino && !exchange {
                    return Ok(());
                }
                if !exchange {
                    match (src.place.is_dir(), d.place.is_dir()) {
                        (true, false) => return Err(errno(libc::ENOTDIR)),
                        (false, true) => return Err(errno(libc::EISDIR)),
                        (true, true) if !self.list_dir(&dpath, &d.place)?.is_empty() => {
                            return Err(errno(libc::ENOTEMPTY));
                        }
                        _ => {}
                    }
                }
            }
            None if exchange => return Err(errno(libc::ENOENT)),
            None => {}
        }
        if parent == newparent && name == newname {
            return Ok(());
        }
        self.upper()?;
        self.copy_up(parent, false)?;
        self.copy_up(newparent, false)?;
        self.prepare_move(&spath, &src, &npplace, newname)?;
        let spd = self.dirfd(Layer::Upper, &ppath)?;
        let dpd = self.dirfd(Layer::Upper, &nppath)?;
        let moved_dir = src.place.is_dir() || dst.as_ref().is_some_and(|d| d.place.is_dir());
        // The replaced entry's inode, kept while the kernel holds its node (see `freeing`).
        let mut pin = None;
        if exchange {
            let Some(d) = &dst else {
                return Err(errno(libc::ENOENT));
            };
            self.prepare_move(&dpath, d, &pplace, name)?;
            nix::fcntl::renameat2(
                spd.as_fd(),
                name,
                dpd.as_fd(),
                newname,
                RenameFlags::RENAME_EXCHANGE,
            )?;
        } else {
            if self.lower_visible(&pplace, name)? {
                create_whiteout(spd.as_fd(), name)?;
            }
            if let Some(d) = dst.take() {
                let d = self.index_before_drop(&nppath, &npplace, newname, d)?;
                if d.place.upper && !d.place.is_dir() {
                    self.drop_index_link(dpd.as_fd(), newname, &d)?;
                }
                dst = Some(d);
            }
            let rename = || {
                if let Some(d) = &dst {
                    if d.place.is_dir() && d.place.upper {
                        self.discard_upper_dir(dpd.as_fd(), newname)?;
                    }
                }
                nix::fcntl::renameat(spd.as_fd(), name, dpd.as_fd(), newname)
                    .map_err(io::Error::from)
            };
            match dst.as_ref().filter(|d| d.place.upper) {
                Some(d) => pin = self.freeing(d, dpd.as_fd(), newname, rename)?,
                None => rename()?,
            }
            remove_whiteout(dpd.as_fd(), newname)?;
        }
        if moved_dir {
            self.invalidate_upper_dirfds();
        }
        self.update_after_rename(
            parent,
            name,
            newparent,
            newname,
            &src,
            dst.as_ref(),
            exchange,
        );
        if let (Some(fd), Some(d)) = (pin, dst.as_ref()) {
            self.nodes.write().pin(d.ino, fd);
        }
        Ok(())
    }

    /// Bring the inode table in line with a completed rename.
    #[allow(clippy::too_many_arguments)]
    fn update_after_rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        src: &Resolved,
        dst: Option<&Resolved>,
        exchange: bool,
    ) {
        let mut nodes = self.nodes.write();
        let mark_upper = |n: &mut crate::union::inode::Node, r: &Resolved| {
            n.place.upper = true;
            if r.place.is_dir() && r.place.dir.as_ref().is_some_and(|d| !d.layers.is_empty()) {
                n.place.redirected = true;
            }
        };
        if let Some(d) = dst {
            if exchange {
                nodes.move_alias(d.ino, newparent, newname, parent, name);
                if let Some(n) = nodes.get_mut(d.ino) {
                    mark_upper(n, d);
                }
            } else {
                nodes.remove_alias(d.ino, newparent, newname);
            }
        }
        nodes.move_alias(src.ino, parent, name, newparent, newname);
        if let Some(n) = nodes.get_mut(src.ino) {
            mark_upper(n, src);
        }
        nodes.placed(src.ino);
        if let Some(d) = dst.filter(|_| exchange) {
            nodes.placed(d.ino);
        }
    }
}
