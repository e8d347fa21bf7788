//! Making and removing names: mknod, mkdir, symlink, link, create, unlink, rmdir, rename (overlayfs dir.c).

use super::reply::{ctx, errno, fuse_attr};
use super::request::{none, On, Out, Req};
use super::FuseAdapter;
use crate::fuse::passthrough::Decision;
use crate::observe::trace::Op;
use fuser::{
    FileHandle, FopenFlags, Generation, INodeNo, RenameFlags, ReplyCreate, ReplyEmpty, ReplyEntry,
    Request,
};
use std::ffi::OsStr;

impl FuseAdapter {
    #[allow(clippy::too_many_arguments)] // the protocol's argument list
    pub(super) fn op_mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.run(
            Req::new(Op::Mknod, On::Name(parent.0, name)).watch(parent.0),
            || {
                self.union
                    .mknod(parent.0, name, mode, u64::from(rdev), &ctx(req, umask))
            },
            Out::node,
            |r| self.entry(reply, r),
        );
    }

    pub(super) fn op_mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.run(
            Req::new(Op::Mkdir, On::Name(parent.0, name)).watch(parent.0),
            || self.union.mkdir(parent.0, name, mode, &ctx(req, umask)),
            Out::node,
            |r| self.entry(reply, r),
        );
    }

    pub(super) fn op_unlink(&self, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.run(
            Req::new(Op::Unlink, On::Name(parent.0, name)).watch(parent.0),
            || self.union.unlink(parent.0, name),
            none,
            |r| Self::empty(reply, r),
        );
    }

    pub(super) fn op_rmdir(&self, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.run(
            Req::new(Op::Rmdir, On::Name(parent.0, name)).watch(parent.0),
            || self.union.rmdir(parent.0, name),
            none,
            |r| Self::empty(reply, r),
        );
    }

    pub(super) fn op_symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        self.run(
            Req::new(Op::Symlink, On::Name(parent.0, link_name)).watch(parent.0),
            || {
                self.union
                    .symlink(parent.0, link_name, target.as_os_str(), &ctx(req, 0))
            },
            Out::node,
            |r| self.entry(reply, r),
        );
    }

    pub(super) fn op_rename(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.run(
            Req::new(Op::Rename, On::Rename(parent.0, name, newparent.0, newname))
                .watch(newparent.0),
            || {
                self.union
                    .rename(parent.0, name, newparent.0, newname, flags.bits())
            },
            none,
            |r| Self::empty(reply, r),
        );
    }

    pub(super) fn op_link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.run(
            Req::new(Op::Link, On::Link(ino.0, newparent.0, newname)).watch(ino.0),
            || self.union.link(ino.0, newparent.0, newname, &ctx(req, 0)),
            Out::node,
            |r| self.entry(reply, r),
        );
    }

    #[allow(clippy::too_many_arguments)] // the protocol's argument list
    pub(super) fn op_create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.run(
            Req::new(Op::Create, On::Name(parent.0, name)).watch(parent.0),
            || {
                self.union
                    .create(parent.0, name, mode, flags, &ctx(req, umask))
            },
            |(a, fh)| Out {
                ino: a.ino,
                fh: Some(*fh),
                ..Out::default()
            },
            |r| match r {
                Ok((a, fh)) => match self.open_mode(
                    a.ino,
                    fh,
                    self.privs.on_open(&self.union, a.ino, fh, flags, req),
                    |f| reply.open_backing(f),
                ) {
                    // A new file has no other handle, so a watched one is never passed.
                    Decision::Passthrough(id) => reply.created_passthrough(
                        &self.ttl,
                        &fuse_attr(&a),
                        Generation(a.generation),
                        FileHandle(fh),
                        FopenFlags::empty(),
                        &id,
                    ),
                    Decision::Daemon(flags) => reply.created(
                        &self.ttl,
                        &fuse_attr(&a),
                        Generation(a.generation),
                        FileHandle(fh),
                        flags,
                    ),
                },
                Err(e) => reply.error(errno(&e)),
            },
        );
    }
}
