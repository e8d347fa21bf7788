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
use nix::sys::stat::{Mode, SFlag};
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
    pub(crate) fn exact_mode(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        inh: &Inherited,
    ) -> io::Result<()> {
        if inh.access.is_some() || inh.default.is_some() {
            return self.apply_inherited(dir, name, inh);
        }
        let st = stat_at(dir, name)?;
        if st.st_mode & 0o7777 == inh.mode & 0o7777 {
            return Ok(());
        }
        self.chmod_at(dir, name, inh.mode & 0o7777)
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
        let work = self.work()?;
        let tmp = self.tmp_name();
        nix::sys::stat::mknodat(
            work.dir.as_fd(),
            tmp.as_os_str(),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(perm),
            0,
        )?;
        let staged = (|| -> io::Result<()> {
            nix::unistd::fchownat(
                work.dir.as_fd(),
                tmp.as_os_str(),
                Some(Uid::from_raw(ne.uid)),
                Some(Gid::from_raw(ne.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
            self.exact_mode(work.dir.as_fd(), &tmp, inh)?;
            let meta = Meta {
                device: true,
                ..Meta::default()
            };
            self.meta
                .write(&sys::proc_path(work.dir.as_fd(), &tmp)?, &meta)
                .map_err(|e| match e.raw_os_error() {
                    // The upper cannot mark it: refuse as overlayfs does.
                    Some(libc::ENOTSUP | libc::EPERM) => errno(libc::EPERM),
                    _ => e,
                })?;
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
            let _ = nix::unistd::unlinkat(
                work.dir.as_fd(),
                tmp.as_os_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
            return Err(e);
        }
        if ne.whiteout {
            remove_whiteout(ne.pd.as_fd(), name)?;
        }
        let st = stat_at(ne.pd.as_fd(), name)?;
        let ino = self.layer_ino(Layer::Upper, &st)?;
        let place = Placement {
            kind: libc::S_IFCHR,
            upper: true,
            ..Placement::default()
        };
        let mut attr = self.attr_from(&st, ino);
        attr.generation = self
            .nodes
            .write()
            .found(parent, name, ino, place, true, None);
        Ok(attr)
    }
}
