//! setuid/setgid clearing that the kernel's FUSE code leaves to the daemon.
//!
//! On ext4 a write, truncate, fallocate or copy_file_range into a regular file by a task
//! without CAP_FSETID clears S_ISUID, and S_ISGID when the file is group-executable or the
//! task is not in the file's group (`setattr_should_drop_suidgid`). Through FUSE (without
//! `FUSE_HANDLE_KILLPRIV_V2`, which fuser 0.18 mishandles) the kernel recomputes that
//! itself with the older rule, so a setgid file without group-exec (2666) written by a
//! non-member kept S_ISGID. strata finishes the job here:
//! - truncates (SETATTR with a size) carry the caller: [`kill_bits`] is added to the mode;
//! - writes may bypass the daemon (passthrough, the writeback cache). A write open whose
//!   opener would need a kill ([`KillOnWrite::on_open`]) is therefore served in the daemon
//!   with `FOPEN_DIRECT_IO`, and each write, fallocate and copy_file_range through it clears
//!   the bits the caller must lose before the data changes. With direct I/O the kernel
//!   clears nothing itself, so the whole set is cleared here.
//!
//! Writes through a shared writable mmap clear nothing on ext4 either (they reach strata
//! as `FUSE_WRITE_CACHE` writes, which are skipped).

use crate::union::fs::Union;
use crate::union::ops_file::SetAttr;
use fuser::Request;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::sync::{Arc, OnceLock};

/// CAP_FSETID's bit in the capability sets.
const CAP_FSETID: u32 = 4;

/// The task a request came from, as the kernel names it in the request header.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// fsuid.
    pub uid: u32,
    /// fsgid.
    pub gid: u32,
    /// Thread id in the daemon's pid namespace (0: not visible there).
    pub pid: u32,
}

/// What /proc/PID/status tells about a caller.
struct Creds {
    groups: Vec<u32>,
    cap_fsetid: bool,
}

impl Caller {
    /// The caller's supplementary groups and whether it holds CAP_FSETID (None: unknown).
    fn creds(&self) -> Option<Creds> {
        if self.pid == 0 {
            return None;
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let mut c = Creds {
            groups: Vec::new(),
            cap_fsetid: false,
        };
        for line in status.lines() {
            if let Some(g) = line.strip_prefix("Groups:") {
                c.groups = g
                    .split_whitespace()
                    .filter_map(|s| s.parse().ok())
                    .collect();
            } else if let Some(hex) = line.strip_prefix("CapEff:") {
                let caps = u64::from_str_radix(hex.trim(), 16).unwrap_or(0);
                c.cap_fsetid = caps & (1 << CAP_FSETID) != 0;
            }
        }
        // A capability held in another user namespace (a rootless container's root) is
        // only worth as much as that namespace maps; counting it as no capability at
        // all errs on the side of clearing the bit.
        if c.cap_fsetid && !same_user_ns(self.pid) {
            c.cap_fsetid = false;
        }
        Some(c)
    }
}

fn same_user_ns(pid: u32) -> bool {
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/user"));
    let ours = std::fs::read_link("/proc/self/ns/user");
    matches!((theirs, ours), (Ok(a), Ok(b)) if a == b)
}

/// Is `caller` in group `gid` or does it hold CAP_FSETID (the kernel's
/// `in_group_or_capable` for the setgid rules)? Unknown credentials count as neither,
/// beyond the fsgid itself.
pub fn in_group_or_capable(caller: &Caller, gid: u32) -> bool {
    if caller.gid == gid {
        return true;
    }
    caller
        .creds()
        .is_some_and(|c| c.cap_fsetid || c.groups.contains(&gid))
}

/// The set-id bits a data change of a file with `mode` and group `gid` by `caller` must
/// clear (0: none), as `setattr_should_drop_suidgid` decides.
pub fn kill_bits(mode: u32, gid: u32, caller: &Caller) -> u32 {
    if mode & libc::S_IFMT != libc::S_IFREG || mode & (libc::S_ISUID | libc::S_ISGID) == 0 {
        return 0;
    }
    let creds = caller.creds();
    if creds.as_ref().is_some_and(|c| c.cap_fsetid) {
        return 0;
    }
    let mut kill = mode & libc::S_ISUID;
    if mode & libc::S_ISGID != 0 {
        let member = caller.gid == gid || creds.is_some_and(|c| c.groups.contains(&gid));
        if mode & libc::S_IXGRP != 0 || !member {
            kill |= libc::S_ISGID;
        }
    }
    kill
}

/// The request's caller.
pub fn caller(req: &fuser::Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

/// The adapter's share of this: watched handles, and the notifier that tells the kernel
/// about mode changes it did not ask for.
#[derive(Debug, Default)]
pub struct Privs {
    watch: KillOnWrite,
    notifier: Arc<OnceLock<fuser::Notifier>>,
}

impl Privs {
    /// Where the session's notifier goes once the session exists.
    pub fn notifier_slot(&self) -> Arc<OnceLock<fuser::Notifier>> {
        self.notifier.clone()
    }

    /// See [`KillOnWrite::on_open`].
    pub fn on_open(&self, union: &Union, ino: u64, fh: u64, flags: i32, req: &Request) -> bool {
        self.watch.on_open(union, ino, fh, flags, &caller(req))
    }

    /// A watched handle had to be passed through after all (another handle of the inode
    /// is): its writes will not reach strata, so the bits go now.
    pub fn passed_through(&self, union: &Union, fh: u64, req: &Request) {
        self.before_write(union, fh, req);
    }

    /// Before `req`'s caller changes data through `fh` (a write that is not page-cache
    /// writeback, a fallocate, a copy_file_range into it).
    pub fn before_write(&self, union: &Union, fh: u64, req: &Request) {
        if !self.watch.watched(fh) {
            return;
        }
        match self.watch.before_write(union, fh, &caller(req)) {
            Ok(Some(ino)) => self.inval_attr(ino),
            Ok(None) => {}
            // The kernel reports nothing of this either: the write itself goes on.
            Err(e) => tracing::warn!(fh, "could not clear set-id bits before a write: {e}"),
        }
    }

    /// The handle closed.
    pub fn release(&self, fh: u64) {
        self.watch.release(fh);
    }

    /// After `req`'s caller set xattr `name` on `ino` (see [`Union::after_acl_set`]).
    pub fn after_setxattr(
        &self,
        union: &Union,
        ino: u64,
        name: &OsStr,
        req: &Request,
    ) -> io::Result<()> {
        if union.after_acl_set(ino, name, &caller(req))? {
            self.inval_attr(ino);
        }
        Ok(())
    }

    /// The kernel's cached attributes of `ino` are stale (only the attributes: no page
    /// cache is touched, so this is safe inside a request on that inode).
    fn inval_attr(&self, ino: u64) {
        if let Some(n) = self.notifier.get() {
            if let Err(e) = n.inval_inode(fuser::INodeNo(ino), -1, 0) {
                tracing::debug!(ino, "attribute invalidation failed: {e}");
            }
        }
    }
}

/// Write handles whose writes must clear set-id bits in the daemon, by file handle.
#[derive(Debug, Default)]
pub struct KillOnWrite {
    fhs: Mutex<HashMap<u64, u64>>,
}

impl KillOnWrite {
    /// A file was opened (or created) as `fh`: remember it when `caller` writing to it
    /// would have to clear bits. True means "serve this handle with direct I/O in the
    /// daemon" (no passthrough, no writeback cache), so that every write reaches strata.
    pub fn on_open(&self, union: &Union, ino: u64, fh: u64, flags: i32, caller: &Caller) -> bool {
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            return false;
        }
        let Ok(a) = union.getattr(ino) else {
            return false;
        };
        if kill_bits(a.mode, a.gid, caller) == 0 {
            return false;
        }
        self.fhs.lock().insert(fh, ino);
        true
    }

    /// Was `fh` registered by [`KillOnWrite::on_open`]?
    pub fn watched(&self, fh: u64) -> bool {
        self.fhs.lock().contains_key(&fh)
    }

    /// The handle closed.
    pub fn release(&self, fh: u64) {
        self.fhs.lock().remove(&fh);
    }

    /// Before `caller` changes data through `fh`: clear the bits it must lose. Returns the
    /// node whose mode changed (the kernel's cached attributes are stale then).
    pub fn before_write(&self, union: &Union, fh: u64, caller: &Caller) -> io::Result<Option<u64>> {
        let Some(ino) = self.fhs.lock().get(&fh).copied() else {
            return Ok(None);
        };
        clear(union, ino, caller, None)
    }
}

/// Clear the bits `caller` must lose on node `ino` (with `fh`, the handle it came through).
/// Returns the node when its mode changed.
pub fn clear(union: &Union, ino: u64, caller: &Caller, fh: Option<u64>) -> io::Result<Option<u64>> {
    let a = union.getattr(ino)?;
    let kill = kill_bits(a.mode, a.gid, caller);
    if kill == 0 {
        return Ok(None);
    }
    let sa = SetAttr {
        mode: Some(a.mode & 0o7777 & !kill),
        fh,
        ..SetAttr::default()
    };
    union.setattr(ino, &sa)?;
    Ok(Some(ino))
}

/// The setattr a truncate by `caller` becomes: with the set-id bits it must lose cleared
/// from the mode (the kernel sends only what its own, older rule clears).
pub fn truncate_attr(union: &Union, ino: u64, sa: &SetAttr, caller: &Caller) -> SetAttr {
    let mut sa = *sa;
    if sa.size.is_none() {
        return sa;
    }
    let Ok(a) = union.getattr(ino) else {
        return sa;
    };
    let mode = sa.mode.unwrap_or(a.mode & 0o7777) | (a.mode & libc::S_IFMT);
    let kill = kill_bits(mode, a.gid, caller);
    if kill != 0 {
        sa.mode = Some(mode & 0o7777 & !kill);
    }
    sa
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nobody() -> Caller {
        // pid 0: no /proc lookup, only the fsgid counts.
        Caller {
            uid: 65534,
            gid: 65534,
            pid: 0,
        }
    }

    #[test]
    fn rules_of_setattr_should_drop_suidgid() {
        let reg = libc::S_IFREG;
        let c = nobody();
        assert_eq!(kill_bits(reg | 0o2666, 0, &c), libc::S_ISGID);
        assert_eq!(kill_bits(reg | 0o2676, 0, &c), libc::S_ISGID);
        assert_eq!(kill_bits(reg | 0o2666, 65534, &c), 0);
        assert_eq!(kill_bits(reg | 0o2676, 65534, &c), libc::S_ISGID);
        assert_eq!(kill_bits(reg | 0o4666, 65534, &c), libc::S_ISUID);
        assert_eq!(
            kill_bits(reg | 0o6766, 0, &c),
            libc::S_ISUID | libc::S_ISGID
        );
        assert_eq!(kill_bits(reg | 0o0777, 0, &c), 0);
        assert_eq!(kill_bits(libc::S_IFDIR | 0o2777, 0, &c), 0);
    }
}
