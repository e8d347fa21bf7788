//! Extended attributes (overlayfs xattrs.c).

use super::request::{none, On, Out, Req};
use super::FuseAdapter;
use crate::observe::trace::Op;
use fuser::{INodeNo, ReplyEmpty, ReplyXattr, Request};
use std::ffi::OsStr;

impl FuseAdapter {
    pub(super) fn op_setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        reply: ReplyEmpty,
    ) {
        self.run(
            Req::new(Op::Setxattr, On::Node(ino.0)).watch(ino.0),
            || {
                self.union.setxattr(ino.0, name, value, flags)?;
                self.privs.after_setxattr(&self.union, ino.0, name, req)
            },
            none,
            |r| Self::empty(reply, r),
        );
    }

    pub(super) fn op_getxattr(&self, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.run(
            Req::new(Op::Getxattr, On::Node(ino.0)),
            || self.union.getxattr(ino.0, name),
            |v| Out::bytes(v.len()),
            |r| Self::xattr_reply(reply, size, r),
        );
    }

    pub(super) fn op_listxattr(&self, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.run(
            Req::new(Op::Listxattr, On::Node(ino.0)),
            || self.union.listxattr(ino.0),
            |v| Out::bytes(v.len()),
            |r| Self::xattr_reply(reply, size, r),
        );
    }

    pub(super) fn op_removexattr(&self, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.run(
            Req::new(Op::Removexattr, On::Node(ino.0)).watch(ino.0),
            || self.union.removexattr(ino.0, name),
            none,
            |r| Self::empty(reply, r),
        );
    }
}
