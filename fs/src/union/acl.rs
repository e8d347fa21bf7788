//! POSIX ACLs: what the daemon must do once the kernel enforces them (`FUSE_POSIX_ACL`).
//!
//! With `FUSE_POSIX_ACL` the kernel checks access against `system.posix_acl_access`
//! (read through getxattr) and, with `FUSE_DONT_MASK`, sends the creation mode unmasked
//! together with the caller's umask. The daemon then owes what ext4 does itself:
//! - a new entry inherits its parent's default ACL, with a mode computed from that ACL
//!   and the creation mode, the umask ignored (`posix_acl_create`); without a default
//!   ACL the mode is `mode & ~umask` ([`inherit`]);
//! - setting an access ACL updates the mode bits; the upper filesystem does that (and
//!   chmod updating the ACL) when strata writes the xattr or the mode there, but the
//!   daemon writes with CAP_FSETID, so the setgid bit a non-member caller loses is
//!   cleared here ([`Union::after_acl_set`]);
//! - ids in ACL entries follow `uidmapping=`/`gidmapping=` like the owners do.
//!
//! The xattr format is the kernel's: a little-endian u32 version (2), then entries of
//! u16 tag, u16 permissions, u32 id.

use crate::types::errno;
use crate::union::fs::Union;
use crate::union::privs::{in_group_or_capable, Caller};
use std::ffi::OsStr;
use std::io;
use std::os::fd::BorrowedFd;
use strata_sys as sys;

/// The access ACL xattr.
pub const ACCESS: &str = "system.posix_acl_access";
/// The default ACL xattr (directories).
pub const DEFAULT: &str = "system.posix_acl_default";

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

/// Is `name` one of the two ACL xattrs?
pub fn is_acl_name(name: &[u8]) -> bool {
    name == ACCESS.as_bytes() || name == DEFAULT.as_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// A parsed ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl(Vec<Entry>);

impl Acl {
    /// Parse the xattr form (EINVAL when malformed, as the kernel answers).
    pub fn parse(v: &[u8]) -> io::Result<Acl> {
        let bad = || errno(libc::EINVAL);
        let (head, rest) = v.split_first_chunk::<4>().ok_or_else(bad)?;
        if u32::from_le_bytes(*head) != VERSION || rest.len() % 8 != 0 {
            return Err(bad());
        }
        let entries = rest
            .chunks_exact(8)
            .map(|c| Entry {
                tag: u16::from_le_bytes([c[0], c[1]]),
                perm: u16::from_le_bytes([c[2], c[3]]),
                id: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Ok(Acl(entries))
    }

    /// The xattr form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(4 + 8 * self.0.len());
        v.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.0 {
            v.extend_from_slice(&e.tag.to_le_bytes());
            v.extend_from_slice(&e.perm.to_le_bytes());
            v.extend_from_slice(&e.id.to_le_bytes());
        }
        v
    }

    /// The same ACL with named user and group ids passed through `uid` and `gid`.
    fn map_ids(&self, uid: impl Fn(u32) -> u32, gid: impl Fn(u32) -> u32) -> Acl {
        Acl(self
            .0
            .iter()
            .map(|e| Entry {
                id: match e.tag {
                    USER => uid(e.id),
                    GROUP => gid(e.id),
                    _ => e.id,
                },
                ..*e
            })
            .collect())
    }

    /// The kernel's `posix_acl_create_masq`: restrict this (inherited) ACL to the
    /// permission bits of `mode` and `mode` to the ACL. True when the result says more
    /// than the mode bits can (so the entry needs an access ACL).
    fn create_masq(&mut self, mode: &mut u32) -> io::Result<bool> {
        let mut m = *mode & 0o777;
        let mut not_equiv = false;
        let (mut group_obj, mut mask) = (None, None);
        for (i, e) in self.0.iter_mut().enumerate() {
            let p = u32::from(e.perm);
            match e.tag {
                USER_OBJ => {
                    e.perm &= ((m >> 6) & 7) as u16;
                    m &= (u32::from(e.perm) << 6) | !0o700;
                }
                USER | GROUP => not_equiv = true,
                GROUP_OBJ => group_obj = Some(i),
                OTHER => {
                    e.perm &= (m & 7) as u16;
                    m &= (p & u32::from(e.perm)) | !0o007;
                }
                MASK => {
                    mask = Some(i);
                    not_equiv = true;
                }
                _ => return Err(errno(libc::EIO)),
            }
        }
        let g = mask.or(group_obj).ok_or_else(|| errno(libc::EIO))?;
        let e = &mut self.0[g];
        e.perm &= ((m >> 3) & 7) as u16;
        m &= (u32::from(e.perm) << 3) | !0o070;
        *mode = (*mode & !0o777) | m;
        Ok(not_equiv)
    }
}

/// What a new entry gets from its parent: its mode, and the ACL xattrs to give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inherited {
    /// Permission bits (with any set-id bits of the creation mode).
    pub mode: u32,
    /// `system.posix_acl_access`, when the mode bits cannot say it all.
    pub access: Option<Vec<u8>>,
    /// `system.posix_acl_default` (directories under a default ACL).
    pub default: Option<Vec<u8>>,
}

/// The kernel's `posix_acl_create`: the mode and ACLs of a new entry made with `mode`
/// (permission and set-id bits) and `umask` in a directory whose default ACL (xattr form,
/// on-disk ids) is `parent_default`.
pub fn inherit(
    parent_default: Option<&[u8]>,
    mode: u32,
    umask: u32,
    is_dir: bool,
) -> io::Result<Inherited> {
    let Some(raw) = parent_default else {
        return Ok(Inherited {
            mode: mode & !(umask & 0o777),
            access: None,
            default: None,
        });
    };
    let mut acl = Acl::parse(raw)?;
    let mut mode = mode;
    let not_equiv = acl.create_masq(&mut mode)?;
    Ok(Inherited {
        mode,
        access: not_equiv.then(|| acl.to_bytes()),
        default: is_dir.then(|| raw.to_vec()),
    })
}

impl Union {
    /// The default ACL of the upper directory `dir` (on-disk ids), if it has one.
    pub(crate) fn default_acl(&self, dir: BorrowedFd<'_>) -> io::Result<Option<Vec<u8>>> {
        if self.opts.no_xattrs {
            return Ok(None);
        }
        // "dir/." : the fd's own /proc link would be read as a symlink by lgetxattr.
        let p = sys::proc_path(dir, OsStr::new("."))?;
        match sys::lgetxattr(&p, OsStr::new(DEFAULT)) {
            Ok(v) => Ok(v.filter(|v| !v.is_empty())),
            // An upper filesystem without ACLs: creation as without a default ACL.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Give the new entry `dir/name` what it inherited: its ACL xattrs, then its exact mode
    /// (the upper filesystem applied the daemon's umask, or its own inheritance with it).
    pub(crate) fn apply_inherited(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        inh: &Inherited,
    ) -> io::Result<()> {
        let p = sys::proc_path(dir, name)?;
        for (xname, v) in [(ACCESS, &inh.access), (DEFAULT, &inh.default)] {
            if let Some(v) = v {
                sys::lsetxattr(&p, OsStr::new(xname), v, 0)?;
            }
        }
        self.chmod_at(dir, name, inh.mode & 0o7777)
    }

    /// An ACL xattr value as the mount shows it (ids mapped by `uidmapping=`/`gidmapping=`).
    pub(crate) fn acl_shown(&self, name: &OsStr, v: Vec<u8>) -> Vec<u8> {
        if !self.maps_ids() || !is_acl_name(name.as_encoded_bytes()) {
            return v;
        }
        match Acl::parse(&v) {
            Ok(a) => a
                .map_ids(
                    |u| self.opts.uidmap.to_inside(u),
                    |g| self.opts.gidmap.to_inside(g),
                )
                .to_bytes(),
            Err(_) => v,
        }
    }

    /// An ACL xattr value as it is stored (ids mapped back to the branches').
    pub(crate) fn acl_stored(&self, name: &OsStr, v: &[u8]) -> io::Result<Vec<u8>> {
        if !self.maps_ids() || !is_acl_name(name.as_encoded_bytes()) {
            return Ok(v.to_vec());
        }
        Ok(Acl::parse(v)?
            .map_ids(
                |u| self.opts.uidmap.to_outside(u),
                |g| self.opts.gidmap.to_outside(g),
            )
            .to_bytes())
    }

    fn maps_ids(&self) -> bool {
        !self.opts.uidmap.is_identity() || !self.opts.gidmap.is_identity()
    }

    /// After `caller` set xattr `name` on node `ino`: setting an access ACL clears the
    /// setgid bit unless the caller is in the file's group or holds CAP_FSETID
    /// (`posix_acl_update_mode`; the daemon's own write kept it). True when the mode changed.
    pub fn after_acl_set(&self, ino: u64, name: &OsStr, caller: &Caller) -> io::Result<bool> {
        if name.as_encoded_bytes() != ACCESS.as_bytes() {
            return Ok(false);
        }
        let a = self.getattr(ino)?;
        if a.mode & libc::S_ISGID == 0 || in_group_or_capable(caller, a.gid) {
            return Ok(false);
        }
        let sa = crate::union::ops_file::SetAttr {
            mode: Some(a.mode & 0o7777 & !libc::S_ISGID),
            ..Default::default()
        };
        self.setattr(ino, &sa)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Acl {
        Acl(entries
            .iter()
            .map(|&(tag, perm, id)| Entry { tag, perm, id })
            .collect())
    }

    #[test]
    fn round_trip() {
        let a = acl(&[
            (USER_OBJ, 7, u32::MAX),
            (USER, 4, 1000),
            (GROUP_OBJ, 5, u32::MAX),
        ]);
        assert_eq!(Acl::parse(&a.to_bytes()).unwrap(), a);
        assert!(Acl::parse(&[1, 0, 0, 0]).is_err());
        assert!(Acl::parse(&[2, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn inherit_as_posix_acl_create() {
        // setfacl -d --set u::rwx,g::rwx,o::- ; create 0666, umask 022: 0660, no access ACL.
        let d = acl(&[
            (USER_OBJ, 7, u32::MAX),
            (GROUP_OBJ, 7, u32::MAX),
            (OTHER, 0, u32::MAX),
        ]);
        let i = inherit(Some(&d.to_bytes()), 0o666, 0o022, false).unwrap();
        assert_eq!((i.mode, i.access, i.default), (0o660, None, None));
        let i = inherit(Some(&d.to_bytes()), 0o2777, 0o022, true).unwrap();
        assert_eq!(i.mode, 0o2770);
        assert_eq!(i.default, Some(d.to_bytes()));
        // A named entry and a mask: the mask takes the group bits.
        let d = acl(&[
            (USER_OBJ, 7, u32::MAX),
            (USER, 7, 0),
            (GROUP_OBJ, 7, u32::MAX),
            (MASK, 7, u32::MAX),
            (OTHER, 5, u32::MAX),
        ]);
        let i = inherit(Some(&d.to_bytes()), 0o644, 0o077, false).unwrap();
        assert_eq!(i.mode, 0o644);
        let got = Acl::parse(&i.access.unwrap()).unwrap();
        assert_eq!(
            got.0[3],
            Entry {
                tag: MASK,
                perm: 4,
                id: u32::MAX
            }
        );
        assert_eq!(
            got.0[4],
            Entry {
                tag: OTHER,
                perm: 4,
                id: u32::MAX
            }
        );
        // No default ACL: the umask.
        let i = inherit(None, 0o666, 0o027, false).unwrap();
        assert_eq!(i.mode, 0o640);
    }
}
