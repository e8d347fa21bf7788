//! Conversions between union types and the protocol's, and the replies every group uses.

use super::FuseAdapter;
use crate::fuse::passthrough::{Decision, Serve};
use crate::types::{err_no, Ctx, Layer};
use crate::union::attr::Attr;
use crate::union::handles::DirEntry;
use crate::union::ops_file::SetTime;
use fuser::{
    BackingId, Errno, FileHandle, FileType, FopenFlags, Generation, INodeNo, ReplyAttr, ReplyData,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyXattr, Request, TimeOrNow,
};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub(super) fn errno(e: &io::Error) -> Errno {
    Errno::from_i32(err_no(e))
}

pub(super) fn file_type(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

pub(super) fn fuse_attr(a: &Attr) -> fuser::FileAttr {
    fuser::FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: file_type(a.mode),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

pub(super) fn ctx(req: &Request, umask: u32) -> Ctx {
    Ctx {
        uid: req.uid(),
        gid: req.gid(),
        umask,
    }
}

pub(super) fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(s) => SetTime::At(s),
    })
}

impl FuseAdapter {
    /// How to answer the open of handle `fh` of `ino`: passed through to its branch file
    /// when the kernel can take it (registered with `register`), else served here.
    /// A `watched` handle (privs.rs) must have its writes reach the daemon.
    pub(super) fn open_mode(
        &self,
        ino: u64,
        fh: u64,
        watched: bool,
        register: impl FnOnce(&std::fs::File) -> io::Result<BackingId>,
    ) -> Decision {
        if watched && !self.pass.enabled() {
            // The writeback cache would hide the writer: direct I/O sends each write.
            return Decision::Daemon(FopenFlags::FOPEN_DIRECT_IO);
        }
        let f = self
            .pass
            .enabled()
            .then(|| self.union.file(fh).ok())
            .flatten();
        let serve = match &f {
            Some(f) if f.delta.is_some() => Serve::Daemon,
            Some(_) if watched => Serve::Watched,
            Some(f) if f.layer == Layer::Upper => Serve::Whole(&f.file),
            Some(f) if !f.writable => Serve::Lower,
            _ => Serve::Daemon,
        };
        self.pass.open(ino, fh, serve, register, self.cache_flags())
    }

    pub(super) fn entry(&self, reply: ReplyEntry, r: io::Result<Attr>) {
        match r {
            Ok(a) => reply.entry(&self.ttl, &fuse_attr(&a), Generation(a.generation)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// The answer to a lookup: a name that does not exist is a negative entry (node 0)
    /// the kernel keeps for the entry timeout, so repeated misses (PATH searches, ld.so
    /// probing) stay in the kernel. Every way a name can appear goes through this mount
    /// (create, mkdir, link, rename), and the kernel drops the negative entry then.
    pub(super) fn lookup_entry(&self, reply: ReplyEntry, r: io::Result<Attr>) {
        match r {
            Err(e) if err_no(&e) == libc::ENOENT && !self.ttl.is_zero() => {
                let none = fuser::FileAttr {
                    ino: INodeNo(0),
                    size: 0,
                    blocks: 0,
                    atime: SystemTime::UNIX_EPOCH,
                    mtime: SystemTime::UNIX_EPOCH,
                    ctime: SystemTime::UNIX_EPOCH,
                    crtime: SystemTime::UNIX_EPOCH,
                    kind: FileType::RegularFile,
                    perm: 0,
                    nlink: 0,
                    uid: 0,
                    gid: 0,
                    rdev: 0,
                    blksize: 0,
                    flags: 0,
                };
                reply.entry_with_ttls(&Duration::ZERO, &self.ttl, &none, Generation(0))
            }
            r => self.entry(reply, r),
        }
    }

    pub(super) fn attr(&self, reply: ReplyAttr, r: io::Result<Attr>) {
        match r {
            Ok(a) => reply.attr(&self.ttl, &fuse_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Fill a readdirplus reply from a listing, looking each entry up.
    pub(super) fn readdirplus_reply(
        &self,
        ino: INodeNo,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
        r: io::Result<Arc<Vec<DirEntry>>>,
    ) {
        let entries = match r {
            Ok(e) => e,
            Err(e) => return reply.error(errno(&e)),
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            let dots = e.name.as_bytes() == b"." || e.name.as_bytes() == b"..";
            let attr = if dots {
                // The kernel takes no reference on "." and ".." entries.
                match self.union.getattr(e.ino) {
                    Ok(a) => a,
                    Err(_) => continue,
                }
            } else {
                match self.union.lookup(ino.0, &e.name) {
                    Ok(a) => a,
                    // Vanished since the listing was taken: skip it, as a fresh listing would.
                    Err(_) => continue,
                }
            };
            let full = reply.add(
                INodeNo(attr.ino),
                (i + 1) as u64,
                &e.name,
                &self.ttl,
                &fuse_attr(&attr),
                Generation(attr.generation),
            );
            if full {
                if !dots {
                    self.union.forget(attr.ino, 1);
                }
                break;
            }
        }
        reply.ok();
    }

    pub(super) fn data(reply: ReplyData, r: io::Result<Vec<u8>>) {
        match r {
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(errno(&e)),
        }
    }

    pub(super) fn empty(reply: ReplyEmpty, r: io::Result<()>) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    pub(super) fn xattr_reply(reply: ReplyXattr, size: u32, r: io::Result<Vec<u8>>) {
        match r {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Open flags for a handle the daemon serves through the page cache.
    pub(super) fn cache_flags(&self) -> FopenFlags {
        // strata is the only writer of the branches and every write goes through this
        // page cache, so cached pages stay valid across opens (even across copy-up, which
        // keeps the bytes). A traced mount drops them at open, so each open's reads show.
        if self.tracer.is_some() {
            FopenFlags::empty()
        } else {
            FopenFlags::FOPEN_KEEP_CACHE
        }
    }

    pub(super) fn dir_entries(
        &self,
        fh: FileHandle,
        offset: u64,
        plus: bool,
    ) -> io::Result<Arc<Vec<DirEntry>>> {
        self.union.readdir(fh.0, offset, plus).map(|(e, _)| e)
    }
}
