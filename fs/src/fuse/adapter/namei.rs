//! Name lookup and forgetting nodes (overlayfs namei.c).

use super::request::{none, On, Out, Req};
use super::FuseAdapter;
use crate::observe::trace::Op;
use fuser::{INodeNo, ReplyEntry};
use std::ffi::OsStr;

impl FuseAdapter {
    pub(super) fn op_lookup(&self, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.run(
            Req::new(Op::Lookup, On::Name(parent.0, name)),
            || self.union.lookup(parent.0, name),
            Out::node,
            |r| self.lookup_entry(reply, r),
        );
    }

    pub(super) fn op_forget(&self, ino: INodeNo, nlookup: u64) {
        self.run(
            Req::new(Op::Forget, On::Node(ino.0)),
            || {
                self.union.forget(ino.0, nlookup);
                Ok(())
            },
            none,
            |_| {},
        );
    }
}
