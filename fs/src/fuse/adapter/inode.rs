//! Attributes, symlink targets and access checks (overlayfs inode.c).

use super::reply::set_time;
use super::request::{none, On, Out, Req};
use super::FuseAdapter;
use crate::observe::trace::Op;
use crate::union::ops_file::SetAttr;
use fuser::{FileHandle, INodeNo, ReplyAttr, ReplyData, ReplyEmpty, Request, TimeOrNow};

impl FuseAdapter {
    pub(super) fn op_getattr(&self, ino: INodeNo, reply: ReplyAttr) {
        self.run(
            Req::new(Op::Getattr, On::Node(ino.0)),
            || self.union.getattr(ino.0),
            none,
            |r| self.attr(reply, r),
        );
    }

    #[allow(clippy::too_many_arguments)] // the protocol's argument list
    pub(super) fn op_setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
        reply: ReplyAttr,
    ) {
        let sa = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: set_time(atime),
            mtime: set_time(mtime),
            fh: fh.map(|f| f.0),
        };
        let sa = crate::union::privs::truncate_attr(
            &self.union,
            ino.0,
            &sa,
            &crate::union::privs::caller(req),
        );
        let mut req = Req::new(Op::Setattr, On::Node(ino.0)).watch(ino.0);
        // A truncate is traced with its new size as the offset.
        req.off = size;
        self.run(
            req,
            || self.union.setattr(ino.0, &sa),
            none,
            |r| self.attr(reply, r),
        );
    }

    pub(super) fn op_readlink(&self, ino: INodeNo, reply: ReplyData) {
        self.run(
            Req::new(Op::Readlink, On::Node(ino.0)),
            || self.union.readlink(ino.0),
            |v| Out::bytes(v.len()),
            |r| Self::data(reply, r),
        );
    }

    pub(super) fn op_access(&self, ino: INodeNo, reply: ReplyEmpty) {
        // default_permissions makes the kernel check modes; we only confirm existence.
        self.run(
            Req::new(Op::Access, On::Node(ino.0)),
            || self.union.getattr(ino.0).map(|_| ()),
            none,
            |r| Self::empty(reply, r),
        );
    }
}
