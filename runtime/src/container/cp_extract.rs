//! The receiving side of `cp` into a container: a tar written below a directory fd of the
//! container's root, each component opened with `O_NOFOLLOW` (a symlink in the way is an
//! error, never followed), `..` and absolute names refused.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, mkdirat, mknodat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::err;
use crate::layer::extract::safe_components;
use crate::util::{Ctx, Result};

/// Who owns what is copied in.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    /// The container's root (docker's default).
    Root,
    /// The owners recorded in the tar (`-a`).
    Keep,
}

/// A tar extraction into one directory of a container.
pub struct Extract {
    dest: OwnedFd,
    owner: Owner,
    dirs: Vec<(Vec<OsString>, u32, i64)>,
}

fn mode(m: u32) -> Mode {
    Mode::from_bits_truncate(m & 0o7777)
}

impl Extract {
    /// Extract into `dest` (an fd of a directory in the container).
    pub fn new(dest: OwnedFd, owner: Owner) -> Self {
        Extract {
            dest,
            owner,
            dirs: Vec::new(),
        }
    }

    /// Read the tar from `r` and write each entry.
    pub fn run(mut self, r: &mut dyn Read) -> Result<()> {
        let mut a = tar::Archive::new(r);
        for e in a.entries().ctx(|| "cannot read the tar")? {
            let mut e = e.map_err(|e| err!("corrupt tar: {}", e.to_string().escape_debug()))?;
            let raw = e.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).escape_debug().to_string();
            let parts = if raw == b"." || raw == b"./" {
                Vec::new()
            } else {
                safe_components(&raw).map_err(|e| err!("refusing {shown}: {e}"))?
            };
            self.entry(&parts, &mut e)
                .map_err(|e| err!("cannot copy {shown}: {e}"))?;
        }
        // Modes and times of directories last: a read-only directory still gets its files.
        for (parts, m, mtime) in std::mem::take(&mut self.dirs) {
            let (dir, name) = self.parent(&parts)?;
            let _ = nix::sys::stat::fchmodat(
                dir.as_fd(),
                name.as_os_str(),
                mode(m),
                nix::sys::stat::FchmodatFlags::NoFollowSymlink,
            );
            let t = TimeSpec::new(mtime, 0);
            let _ = nix::sys::stat::utimensat(
                dir.as_fd(),
                name.as_os_str(),
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            );
        }
        Ok(())
    }

    /// The directory holding `parts`' last component (created as needed) and that name.
    fn parent(&self, parts: &[OsString]) -> Result<(OwnedFd, OsString)> {
        let mut cur = self
            .dest
            .as_fd()
            .try_clone_to_owned()
            .ctx(|| "cannot duplicate a descriptor")?;
        let Some((last, dirs)) = parts.split_last() else {
            return Ok((cur, ".".into()));
        };
        for c in dirs {
            cur = open_dir(cur.as_fd(), c).or_else(|e| match e {
                Errno::ENOENT => {
                    mkdirat(cur.as_fd(), c.as_os_str(), Mode::from_bits_truncate(0o755))
                        .map_err(|e| err!("cannot create a directory: {e}"))?;
                    open_dir(cur.as_fd(), c).map_err(|e| err!("cannot open a directory: {e}"))
                }
                Errno::ELOOP | Errno::ENOTDIR => {
                    Err(err!("a symlink or file is in the way: not followed"))
                }
                e => Err(err!("cannot open a directory: {e}")),
            })?;
        }
        Ok((cur, last.clone()))
    }

    fn entry(&mut self, parts: &[OsString], e: &mut tar::Entry<'_, &mut dyn Read>) -> Result<()> {
        let h = e.header();
        let t = h.entry_type();
        let m = h.mode().unwrap_or(0o644);
        let mtime = h.mtime().unwrap_or(0) as i64;
        let (uid, gid) = match self.owner {
            Owner::Root => (0, 0),
            Owner::Keep => (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32),
        };
        let (dir, name) = self.parent(parts)?;
        let existing = fstatat(dir.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).ok();
        let is_dir = existing.as_ref().is_some_and(|st| {
            SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
        });
        if t.is_dir() {
            if existing.is_some() && !is_dir {
                unlinkat(dir.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                    .ctx(|| "cannot replace it")?;
            }
            if !is_dir {
                mkdirat(
                    dir.as_fd(),
                    name.as_os_str(),
                    Mode::from_bits_truncate(0o700),
                )
                .ctx(|| "cannot create it")?;
            }
            self.chown(dir.as_fd(), &name, uid, gid);
            self.dirs.push((parts.to_vec(), m, mtime));
            return Ok(());
        }
        if is_dir {
            return Err(err!("cannot overwrite a directory with a non-directory"));
        }
        if existing.is_some() {
            unlinkat(dir.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                .ctx(|| "cannot replace it")?;
        }
        if t.is_file() {
            let f = openat(
                dir.as_fd(),
                name.as_os_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .ctx(|| "cannot create it")?;
            let mut f = std::fs::File::from(f);
            std::io::copy(e, &mut f).ctx(|| "cannot write it")?;
            let _ = nix::unistd::fchown(
                f.as_fd(),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
            );
            nix::sys::stat::fchmod(f.as_fd(), mode(m)).ctx(|| "cannot set its mode")?;
        } else if t.is_symlink() {
            let target = e
                .link_name_bytes()
                .ok_or_else(|| err!("a symlink without a target"))?;
            let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&target[..])
                .to_os_string();
            symlinkat(target.as_os_str(), dir.as_fd(), name.as_os_str())
                .ctx(|| "cannot create it")?;
            self.chown(dir.as_fd(), &name, uid, gid);
        } else if t.is_character_special() || t.is_block_special() || t.is_fifo() {
            let kind = if t.is_fifo() {
                SFlag::S_IFIFO
            } else if t.is_block_special() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFCHR
            };
            let dev = nix::sys::stat::makedev(
                u64::from(h.device_major().ok().flatten().unwrap_or(0)),
                u64::from(h.device_minor().ok().flatten().unwrap_or(0)),
            );
            mknodat(dir.as_fd(), name.as_os_str(), kind, mode(m), dev)
                .ctx(|| "cannot create it")?;
            self.chown(dir.as_fd(), &name, uid, gid);
        } else {
            return Err(err!("unsupported entry type (hard links are not copied)"));
        }
        let ts = TimeSpec::new(mtime, 0);
        let _ = nix::sys::stat::utimensat(
            dir.as_fd(),
            name.as_os_str(),
            &ts,
            &ts,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        );
        Ok(())
    }

    fn chown(&self, dir: BorrowedFd<'_>, name: &OsString, uid: u32, gid: u32) {
        let _ = fchownat(
            dir,
            name.as_os_str(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        );
    }
}

fn open_dir(dir: BorrowedFd<'_>, name: &OsString) -> std::result::Result<OwnedFd, Errno> {
    openat(
        dir,
        name.as_os_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}
