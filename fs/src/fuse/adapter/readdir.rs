//! Directory handles and listings (overlayfs readdir.c).

use super::reply::{errno, file_type};
use super::request::{none, On, Req};
use super::FuseAdapter;
use crate::observe::trace::Op;
use fuser::{
    FileHandle, FopenFlags, INodeNo, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyOpen,
};

impl FuseAdapter {
    pub(super) fn op_opendir(&self, ino: INodeNo, reply: ReplyOpen) {
        self.run(
            Req::new(Op::Opendir, On::Node(ino.0)),
            || self.union.opendir_cached(ino.0),
            none,
            |r| match r {
                Ok((fh, cache)) => reply.opened(FileHandle(fh), self.dir_flags(cache)),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    /// Open flags of a directory handle: a cacheable listing (`cache`) stays in the kernel
    /// across opens, unless the mount is traced (each listing then reaches the daemon).
    /// Without FOPEN_KEEP_CACHE the kernel drops what it cached at open.
    fn dir_flags(&self, cache: bool) -> FopenFlags {
        if cache && self.tracer.is_none() && !self.ttl.is_zero() {
            FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::empty()
        }
    }

    pub(super) fn op_readdir(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.run(
            Req::new(Op::Readdir, On::Node(ino.0)).at(offset),
            || self.dir_entries(fh, offset, false),
            none,
            |r| {
                let entries = match r {
                    Ok(e) => e,
                    Err(e) => return reply.error(errno(&e)),
                };
                for (i, e) in entries.iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(e.ino), (i + 1) as u64, file_type(e.kind), &e.name) {
                        break;
                    }
                }
                reply.ok();
            },
        );
    }

    pub(super) fn op_readdirplus(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        self.run(
            Req::new(Op::Readdirplus, On::Node(ino.0)).at(offset),
            || self.dir_entries(fh, offset, true),
            none,
            |r| self.readdirplus_reply(ino, offset, reply, r),
        );
    }

    pub(super) fn op_releasedir(&self, ino: INodeNo, fh: FileHandle, reply: ReplyEmpty) {
        self.run(
            Req::new(Op::Releasedir, On::Node(ino.0)),
            || {
                self.union.releasedir(fh.0);
                Ok(())
            },
            none,
            |_| reply.ok(),
        );
    }

    pub(super) fn op_fsyncdir(&self, ino: INodeNo, reply: ReplyEmpty) {
        self.run(
            Req::new(Op::Fsyncdir, On::Node(ino.0)),
            || self.union.fsyncdir(ino.0),
            none,
            |r| Self::empty(reply, r),
        );
    }
}
