//! Namespace operations: lookup, create, mkdir, mknod, symlink, link, unlink, rmdir, rename.

use crate::types::{errno, Ctx, Layer};
use crate::union::acl::Inherited;
use crate::union::attr::Attr;
use crate::union::branch::open_in;
use crate::union::fs::Union;
use crate::union::handles::OpenFile;
use crate::union::inode::split;
use crate::union::inode::{join, Placement};
use crate::union::resolve::{check_name, Resolved};
use crate::union::whiteout::{
    create_whiteout, has_whiteout_file, is_internal_name, make_opaque, remove_whiteout,
};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::UnlinkatFlags;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use strata_sys as sys;

/// Where a new entry goes: the upper parent and whether a whiteout must be replaced.
pub(crate) struct NewEntry {
    pub(crate) pd: Arc<OwnedFd>,
    pub(crate) whiteout: bool,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) setgid_dir: bool,
}

pub(crate) fn is_enoent(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOENT)
}

impl Union {
    /// The mode and ACLs a new entry made with `mode` and `umask` gets in `ne`'s
    /// directory (a directory there also inherits a setgid bit).
    pub(crate) fn inherited(
        &self,
        ne: &NewEntry,
        mode: u32,
        umask: u32,
        is_dir: bool,
    ) -> io::Result<Inherited> {
        let mut perm = mode & 0o7777;
        if is_dir && ne.setgid_dir {
            perm |= libc::S_ISGID;
        }
        let parent_default = self.default_acl(ne.pd.as_fd())?;
        crate::union::acl::inherit(parent_default.as_deref(), perm, umask, is_dir)
    }

    /// Find `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> io::Result<Attr> {
        let (ppath, pplace) = self.node_info(parent)?;
        if !pplace.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        let seen = self.nodes.read().clock();
        let r = self.resolve_child(&ppath, &pplace, name)?;
        let mut attr = self.resolved_attr(&r);
        attr.generation = self
            .nodes
            .write()
            .found(parent, name, r.ino, r.place, true, Some(seen));
        Ok(attr)
    }

    /// Check that `name` can be created in `parent` and bring the parent into the upper.
    fn prepare_new(&self, parent: u64, name: &OsStr, ctx: &Ctx) -> io::Result<NewEntry> {
        check_name(name)?;
        if is_internal_name(name) {
            return Err(errno(libc::EINVAL));
        }
        let (ppath, pplace) = self.node_info(parent)?;
        if !pplace.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        match self.resolve_child(&ppath, &pplace, name) {
            Ok(r) => {
                tracing::debug!(parent, ?name, ino = r.ino, "create: name exists");
                return Err(errno(libc::EEXIST));
            }
            Err(e) if is_enoent(&e) => {}
            Err(e) => return Err(e),
        }
        self.upper()?;
        self.copy_up(parent, false)?;
        let pd = self.dirfd(Layer::Upper, &ppath)?;
        let whiteout = has_whiteout_file(pd.as_fd(), name)?;
        let pst = nix::sys::stat::fstat(pd.as_fd())?;
        let setgid_dir = pst.st_mode & libc::S_ISGID != 0;
        Ok(NewEntry {
            whiteout,
            uid: self.uid_out(ctx.uid)?,
            gid: if setgid_dir {
                pst.st_gid
            } else {
                self.gid_out(ctx.gid)?
            },
            setgid_dir,
            pd,
        })
    }

    /// Give a freshly made entry its owner, exactly the mode (and ACLs) it inherited
    /// (None: a symlink), drop a replaced whiteout, register the node.
    #[allow(clippy::too_many_arguments)]
    fn finish_new(
        &self,
        parent: u64,
        name: &OsStr,
        ne: &NewEntry,
        dir: BorrowedFd<'_>,
        staged: &OsStr,
        place: Placement,
        inh: Option<&Inherited>,
    ) -> io::Result<Attr> {
        let st = self.own_new(dir, staged, ne)?;
        if let Some(inh) = inh {
            self.exact_mode(dir, staged, inh, st)?;
        }
        self.publish_new(parent, name, ne, place)
    }

    fn plain_place(kind: u32) -> Placement {
        Placement {
            kind,
            upper: true,
            ..Placement::default()
        }
    }

    /// mknod: fifos, sockets, regular files and (when permitted) devices.
    pub fn mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u64,
        ctx: &Ctx,
    ) -> io::Result<Attr> {
        let kind = mode & libc::S_IFMT;
        let ne = self.prepare_new(parent, name, ctx)?;
        if kind == libc::S_IFCHR && rdev == 0 && !self.can_mark_devices() {
            // It would read back as a whiteout (overlayfs refuses it the same way).
            return Err(errno(libc::EPERM));
        }
        let inh = self.inherited(&ne, mode, ctx.umask, false)?;
        let perm = inh.mode;
        if kind == libc::S_IFCHR && rdev == 0 {
            return self.mknod_null_char(parent, name, &inh, &ne);
        }
        nix::sys::stat::mknodat(
            ne.pd.as_fd(),
            name,
            SFlag::from_bits_truncate(kind),
            Mode::from_bits_truncate(perm),
            rdev,
        )?;
        self.finish_new(
            parent,
            name,
            &ne,
            ne.pd.as_fd(),
            name,
            Self::plain_place(kind),
            Some(&inh),
        )
    }

    /// mkdir; the new directory is opaque when it replaces a whited-out lower entry.
    pub fn mkdir(&self, parent: u64, name: &OsStr, mode: u32, ctx: &Ctx) -> io::Result<Attr> {
        let ne = self.prepare_new(parent, name, ctx)?;
        let inh = self.inherited(&ne, mode, ctx.umask, true)?;
        let perm = inh.mode;
        self.stage_new(
            parent,
            name,
            &ne,
            &inh,
            libc::S_IFDIR,
            |work, tmp| {
                nix::sys::stat::mkdirat(work, tmp, Mode::from_bits_truncate(perm))?;
                Ok(())
            },
            |work, tmp| {
                if ne.whiteout {
                    make_opaque(open_in(work, tmp, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?)?;
                }
                Ok(())
            },
        )
    }

    /// symlink NAME -> TARGET.
    pub fn symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &OsStr,
        ctx: &Ctx,
    ) -> io::Result<Attr> {
        let ne = self.prepare_new(parent, name, ctx)?;
        nix::unistd::symlinkat(target, ne.pd.as_fd(), name)?;
        self.finish_new(
            parent,
            name,
            &ne,
            ne.pd.as_fd(),
            name,
            Self::plain_place(libc::S_IFLNK),
            None,
        )
    }

    /// create + open a regular file; returns its attributes and an open handle.
    pub fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        ctx: &Ctx,
    ) -> io::Result<(Attr, u64)> {
        let ne = self.prepare_new(parent, name, ctx)?;
        let inh = self.inherited(&ne, mode, ctx.umask, false)?;
        let perm = inh.mode;
        let oflags = self.file_open_flags(flags) | OFlag::O_CREAT | OFlag::O_EXCL;
        let fd = open_in(ne.pd.as_fd(), name, oflags, perm)?;
        let attr = self.finish_new(
            parent,
            name,
            &ne,
            ne.pd.as_fd(),
            name,
            Self::plain_place(libc::S_IFREG),
            Some(&inh),
        )?;
        let fh = self.handles.add_file(OpenFile::new(
            File::from(fd),
            attr.ino,
            Layer::Upper,
            true,
            None,
        ));
        Ok((attr, fh))
    }

    /// Hard link `ino` as `newname` in `newparent`.
    pub fn link(&self, ino: u64, newparent: u64, newname: &OsStr, ctx: &Ctx) -> io::Result<Attr> {
        let (_, place) = self.node_info(ino)?;
        if place.is_dir() {
            return Err(errno(libc::EPERM));
        }
        let ne = self.prepare_new(newparent, newname, ctx)?;
        self.copy_up(ino, false)?;
        let (path, place) = self.node_info(ino)?;
        let (sppath, sname) = split(&path)?;
        let spd = self.dirfd(Layer::Upper, &sppath)?;
        nix::unistd::linkat(
            spd.as_fd(),
            sname.as_os_str(),
            ne.pd.as_fd(),
            newname,
            AtFlags::empty(),
        )?;
        if ne.whiteout {
            remove_whiteout(ne.pd.as_fd(), newname)?;
        }
        self.adjust_index_nlink(spd.as_fd(), &sname, 1)?;
        let generation = self
            .nodes
            .write()
            .found(newparent, newname, ino, place, true, None);
        let mut attr = self.getattr(ino)?;
        attr.generation = generation;
        Ok(attr)
    }

    /// Before a name of a lower hard link goes away, copy the inode up through the index
    /// (as overlayfs does with index=on) so its other names report the lowered link count.
    pub(crate) fn index_before_drop(
        &self,
        ppath: &Path,
        pplace: &Placement,
        name: &OsStr,
        r: Resolved,
    ) -> io::Result<Resolved> {
        if r.place.upper || r.place.is_dir() || r.st.st_nlink <= 1 {
            return Ok(r);
        }
        self.copy_up_at(&join(ppath, name), &r, false)?;
        self.resolve_child(ppath, pplace, name)
    }

    /// One name of an indexed hard link is going away: lower its recorded link count.
    pub(crate) fn drop_index_link(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        r: &Resolved,
    ) -> io::Result<()> {
        if r.place.upper && r.meta.as_ref().and_then(|m| m.nlink).is_some() {
            self.adjust_index_nlink(dir, name, -1)?;
        }
        Ok(())
    }

    /// Keep the recorded link count of a copied-up lower hard link in step.
    fn adjust_index_nlink(&self, dir: BorrowedFd<'_>, name: &OsStr, delta: i64) -> io::Result<()> {
        let p = sys::proc_path(dir, name)?;
        if let Some(mut m) = self.meta.read(&p)? {
            if let Some(n) = m.nlink {
                m.nlink = Some(n.saturating_add_signed(delta));
                self.meta.write(&p, &m)?;
            }
        }
        Ok(())
    }

    /// unlink a non-directory.
    pub fn unlink(&self, parent: u64, name: &OsStr) -> io::Result<()> {
        let (ppath, pplace) = self.node_info(parent)?;
        let mut r = self.resolve_child(&ppath, &pplace, name)?;
        if r.place.is_dir() {
            return Err(errno(libc::EISDIR));
        }
        self.upper()?;
        self.copy_up(parent, false)?;
        r = self.index_before_drop(&ppath, &pplace, name, r)?;
        let pd = self.dirfd(Layer::Upper, &ppath)?;
        if self.lower_visible(&pplace, name)? {
            create_whiteout(pd.as_fd(), name)?;
        }
        if r.place.upper {
            self.drop_index_link(pd.as_fd(), name, &r)?;
            let pin = self.freeing(&r, pd.as_fd(), name, || {
                nix::unistd::unlinkat(pd.as_fd(), name, UnlinkatFlags::NoRemoveDir)
                    .map_err(io::Error::from)
            })?;
            self.remove_pinned(r.ino, parent, name, pin);
            return Ok(());
        }
        self.nodes.write().remove_alias(r.ino, parent, name);
        Ok(())
    }

    /// rmdir a directory that is empty in the merged view.
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> io::Result<()> {
        let (ppath, pplace) = self.node_info(parent)?;
        let r = self.resolve_child(&ppath, &pplace, name)?;
        if !r.place.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        let path = join(&ppath, name);
        self.upper()?;
        if !self.list_dir(&path, &r.place)?.is_empty() {
            return Err(errno(libc::ENOTEMPTY));
        }
        self.copy_up(parent, false)?;
        let pd = self.dirfd(Layer::Upper, &ppath)?;
        if self.lower_visible(&pplace, name)? {
            create_whiteout(pd.as_fd(), name)?;
        }
        let pin = if r.place.upper {
            self.freeing(&r, pd.as_fd(), name, || {
                self.discard_upper_dir(pd.as_fd(), name)
            })?
        } else {
            None
        };
        self.invalidate_upper_dirfds();
        self.remove_pinned(r.ino, parent, name, pin);
        Ok(())
    }

    /// Drop the alias of a removed entry, keeping `pin` (from [`Self::freeing`]) with
    /// its node while the kernel still holds it.
    pub(crate) fn remove_pinned(&self, ino: u64, parent: u64, name: &OsStr, pin: Option<OwnedFd>) {
        let mut nodes = self.nodes.write();
        nodes.remove_alias(ino, parent, name);
        if let Some(fd) = pin {
            nodes.pin(ino, fd);
        }
    }

    /// Run `op`, which may free the upper inode behind `r` (the entry `name` in `dir`),
    /// with its node marked as dying, so that a file created meanwhile under the same inode
    /// number gets a new generation. When the kernel holds the node and its number is the
    /// upper inode's, the inode is first opened O_PATH: returned, for [`Self::remove_pinned`]
    /// to keep, so the number is not reused under the kernel's old inode.
    pub(crate) fn freeing(
        &self,
        r: &Resolved,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        op: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<Option<OwnedFd>> {
        let last_link = r.place.is_dir() || r.st.st_nlink <= 1;
        if !last_link {
            op()?;
            return Ok(None);
        }
        let pin = if self.upper_numbered(r) && self.nodes.read().referenced(r.ino) {
            // Without the pin (EMFILE, say) the new generation still tells the inodes apart.
            nix::fcntl::openat(
                dir,
                name,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .ok()
        } else {
            None
        };
        self.nodes.write().set_dying(r.ino, true);
        if let Err(e) = op() {
            self.nodes.write().set_dying(r.ino, false);
            return Err(e);
        }
        Ok(pin)
    }

    /// Whether the number `r` reports is its upper inode's (not one kept from a lower
    /// file it was copied up from, which no new file can get).
    fn upper_numbered(&self, r: &Resolved) -> bool {
        self.upper()
            .is_ok_and(|u| self.xino(u.fs_index, r.st.st_ino) == r.ino)
    }

    /// Move an upper directory (holding at most whiteouts) to the workdir and delete it.
    pub(crate) fn discard_upper_dir(&self, pd: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        let work = self.work()?;
        let tmp = self.tmp_name();
        nix::fcntl::renameat(pd, name, work.dir.as_fd(), tmp.as_os_str())?;
        crate::union::branch::remove_tree(work.dir.as_fd(), &tmp)
    }

    /// Flags for opening a branch file on behalf of the caller.
    pub(crate) fn file_open_flags(&self, flags: i32) -> OFlag {
        let mut f = OFlag::from_bits_truncate(flags)
            & !(OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_NOCTTY
                | OFlag::O_DIRECT
                | OFlag::O_NOATIME
                | OFlag::O_PATH);
        if self.writeback_cache() {
            // The kernel's page cache may read back pages of a write-only file and does
            // O_APPEND positioning itself.
            if f.contains(OFlag::O_WRONLY) {
                f.remove(OFlag::O_WRONLY);
                f.insert(OFlag::O_RDWR);
            }
            f.remove(OFlag::O_APPEND);
        }
        f
    }
}
