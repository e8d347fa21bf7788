//! New entries' modes, and character devices 0/0.
//!
//! A 0/0 device is overlayfs's whiteout format, and also a device ext4 lets anyone with
//! CAP_MKNOD create. strata stores a real one with the `device` mark in its meta xattr
//! (docs/format.md); unmarked, a 0/0 device in any branch is a whiteout.

use crate::types::{errno, Layer};
use crate::union::acl::Inherited;
use crate::union::attr::Attr;
use crate::union::branch::stat_at;
use crate::union::fs::Union;
use crate::union::inode::Placement;
use crate::union::meta::Meta;
use crate::union::ops_dir::NewEntry;
use crate::union::whiteout::remove_whiteout;
use nix::fcntl::{AtFlags, RenameFlags};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::{Gid, Uid};
use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::fd::BorrowedFd;
use strata_sys as sys;

impl Union {
    /// Give a new entry exactly what it inherited (acl.rs: the mode from the caller's
    /// mode and umask or the parent's default ACL, and that ACL): the daemon's own umask
    /// also applied when the upper filesystem created it, chown cleared set-id bits, and
    /// an entry staged in the workdir inherited nothing there.
    /// `st`: the entry's stat from [`Self::own_new`], None when a chown changed it.
    pub(crate) fn exact_mode(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        inh: &Inherited,
        st: Option<FileStat>,
    ) -> io::Result<()> {
        if inh.access.is_some() || inh.default.is_some() {
            return self.apply_inherited(dir, name, inh);
        }
        let st = match st {
            Some(st) => st,
            None => stat_at(dir, name)?,
        };
        if st.st_mode & 0o7777 == inh.mode & 0o7777 {
            return Ok(());
        }
        self.chmod_at(dir, name, inh.mode & 0o7777)
    }

    /// Give the new entry `name` in `dir` its owner. The upper filesystem usually made it
    /// with the right one already (the daemon's ids, the group of a setgid parent): then
    /// no chown, and the stat taken to know is returned for [`Self::exact_mode`].
    pub(crate) fn own_new(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        ne: &NewEntry,
    ) -> io::Result<Option<FileStat>> {
        let st = stat_at(dir, name)?;
        if st.st_uid == ne.uid && st.st_gid == ne.gid {
            return Ok(Some(st));
        }
        nix::unistd::fchownat(
            dir,
            name,
            Some(Uid::from_raw(ne.uid)),
            Some(Gid::from_raw(ne.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        Ok(None)
    }

    /// Whether a real 0/0 device can be told from a whiteout here: the mark lives in the
    /// `trusted.*` meta xattr (device nodes cannot carry `user.*` xattrs).
    pub(crate) fn can_mark_devices(&self) -> bool {
        self.meta.xattr_name() == "trusted.strata.meta"
    }

    /// mknod of a character device 0/0: built and marked in the workdir, then renamed
    /// into place, so that it never shows in the upper unmarked (as a whiteout).
    pub(crate) fn mknod_null_char(
        &self,
        parent: u64,
        name: &OsStr,
        inh: &Inherited,
        ne: &NewEntry,
    ) -> io::Result<Attr> {
        let perm = inh.mode;
        self.stage_new(
            parent,
            name,
            ne,
            inh,
            libc::S_IFCHR,
            |work, tmp| {
                let mode = Mode::from_bits_truncate(perm);
                nix::sys::stat::mknodat(work, tmp, SFlag::S_IFCHR, mode, 0)?;
                Ok(())
            },
            |work, tmp| {
                let meta = Meta {
                    device: true,
                    ..Meta::default()
                };
                self.meta
                    .write(&sys::proc_path(work, tmp)?, &meta)
                    .map_err(|e| match e.raw_os_error() {
                        // The upper cannot mark it: refuse as overlayfs does.
                        Some(libc::ENOTSUP | libc::EPERM) => errno(libc::EPERM),
                        _ => e,
                    })
            },
        )
    }

    /// Build a new entry in the workdir and rename it into place, so that it shows in the
    /// upper only complete: `create` makes it under a staging name, it gets its owner and
    /// exactly the mode it inherited, `finish` adds what must be there before it is seen
    /// (an opaque mark, a device mark), and a failure anywhere removes the staged entry.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn stage_new(
        &self,
        parent: u64,
        name: &OsStr,
        ne: &NewEntry,
        inh: &Inherited,
        kind: u32,
        create: impl FnOnce(BorrowedFd<'_>, &OsStr) -> io::Result<()>,
        finish: impl FnOnce(BorrowedFd<'_>, &OsStr) -> io::Result<()>,
    ) -> io::Result<Attr> {
        let work = self.work()?;
        let tmp = self.tmp_name();
        create(work.dir.as_fd(), &tmp)?;
        let staged = (|| -> io::Result<()> {
            let st = self.own_new(work.dir.as_fd(), &tmp, ne)?;
            // The workdir has no default ACL to inherit, and the daemon's umask applied.
            self.exact_mode(work.dir.as_fd(), &tmp, inh, st)?;
            finish(work.dir.as_fd(), &tmp)?;
            nix::fcntl::renameat2(
                work.dir.as_fd(),
                tmp.as_os_str(),
                ne.pd.as_fd(),
                name,
                RenameFlags::RENAME_NOREPLACE,
            )?;
            Ok(())
        })();
        if let Err(e) = staged {
            let _ = crate::union::branch::remove_tree(work.dir.as_fd(), &tmp);
            return Err(e);
        }
        let place = Placement {
            kind,
            upper: true,
            ..Placement::default()
        };
        self.publish_new(parent, name, ne, place)
    }

    /// A new entry is in place in the upper: drop the whiteout it replaces and enter it in
    /// the inode table under `parent`.
    pub(crate) fn publish_new(
        &self,
        parent: u64,
        name: &OsStr,
        ne: &NewEntry,
        place: Placement,
    ) -> io::Result<Attr> {
        if ne.whiteout {
            remove_whiteout(ne.pd.as_fd(), name)?;
        }
        let st = stat_at(ne.pd.as_fd(), name)?;
        let ino = self.layer_ino(Layer::Upper, &st)?;
        let mut attr = self.attr_from(&st, ino);
        attr.generation = self
            .nodes
            .write()
            .found(parent, name, ino, place, true, None);
        Ok(attr)
    }
}
