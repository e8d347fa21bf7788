//! File handles and their I/O: open, read, write, flush, release, fsync, fallocate, lseek, copy_file_range, ioctl, poll (overlayfs file.c).

use super::reply::errno;
use super::request::{none, On, Out, Req};
use super::FuseAdapter;
use crate::fuse::passthrough::Decision;
use crate::observe::trace::Op;
use fuser::{
    Errno, FileHandle, FopenFlags, INodeNo, OpenFlags, ReplyData, ReplyEmpty, ReplyLseek,
    ReplyOpen, ReplyWrite, Request, WriteFlags,
};

impl FuseAdapter {
    pub(super) fn op_open(
        &self,
        request: &Request,
        ino: INodeNo,
        flags: OpenFlags,
        reply: ReplyOpen,
    ) {
        let mut req = Req::new(Op::Open, On::Node(ino.0));
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            req = req.watch(ino.0);
        }
        self.run(
            req,
            || self.union.open(ino.0, flags.0),
            |fh| Out {
                fh: Some(*fh),
                ..Out::default()
            },
            |r| {
                let fh = match r {
                    Ok(fh) => fh,
                    Err(e) => return reply.error(errno(&e)),
                };
                let watched = self.privs.on_open(&self.union, ino.0, fh, flags.0, request);
                match self.open_mode(ino.0, fh, watched, |f| reply.open_backing(f)) {
                    Decision::Passthrough(id) => {
                        if watched {
                            self.privs.passed_through(&self.union, fh, request);
                        }
                        reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id)
                    }
                    // chattr +a: the upper file opens only with O_APPEND, so its writes must
                    // reach the daemon as they are (no page cache).
                    Decision::Daemon(_)
                        if flags.0 & libc::O_APPEND != 0 && self.union.append_only_handle(fh) =>
                    {
                        reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO)
                    }
                    Decision::Daemon(flags) => reply.opened(FileHandle(fh), flags),
                }
            },
        );
    }

    pub(super) fn op_read(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        reply: ReplyData,
    ) {
        self.run(
            Req::new(Op::Read, On::Fh(ino.0, fh.0)).at(offset),
            || self.union.read(fh.0, offset, size),
            |v| Out::bytes(v.len()),
            |r| Self::data(reply, r),
        );
    }

    #[allow(clippy::too_many_arguments)] // the protocol's argument list
    pub(super) fn op_write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        reply: ReplyWrite,
    ) {
        self.run(
            Req::new(Op::Write, On::Fh(ino.0, fh.0)).at(offset),
            || {
                // Page-cache writeback (mmap, writeback cache) clears nothing, as on ext4.
                if !write_flags.contains(WriteFlags::FUSE_WRITE_CACHE) {
                    self.privs.before_write(&self.union, fh.0, req);
                }
                self.union.write(fh.0, offset, data)
            },
            |n| Out::bytes(*n),
            |r| match r {
                Ok(n) => reply.written(n as u32),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    pub(super) fn op_flush(&self, ino: INodeNo, fh: FileHandle, reply: ReplyEmpty) {
        self.run(
            Req::new(Op::Flush, On::Fh(ino.0, fh.0)),
            || Ok(()),
            none,
            |_| reply.ok(),
        );
    }

    pub(super) fn op_release(&self, ino: INodeNo, fh: FileHandle, reply: ReplyEmpty) {
        self.run(
            Req::new(Op::Release, On::Node(ino.0)),
            || {
                self.pass.release(fh.0);
                self.privs.release(fh.0);
                self.union.release(fh.0);
                Ok(())
            },
            none,
            |_| reply.ok(),
        );
    }

    pub(super) fn op_fsync(&self, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        self.run(
            Req::new(Op::Fsync, On::Fh(ino.0, fh.0)),
            || self.union.fsync(fh.0, datasync),
            none,
            |r| Self::empty(reply, r),
        );
    }

    #[allow(clippy::too_many_arguments)] // the protocol's argument list
    pub(super) fn op_fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.run(
            Req::new(Op::Fallocate, On::Fh(ino.0, fh.0))
                .at(offset)
                .watch(ino.0),
            || {
                self.privs.before_write(&self.union, fh.0, req);
                self.union.fallocate(fh.0, offset, length, mode)
            },
            |_| Out {
                bytes: Some(length),
                ..Out::default()
            },
            |r| Self::empty(reply, r),
        );
    }

    pub(super) fn op_lseek(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        self.run(
            Req::new(Op::Lseek, On::Fh(ino.0, fh.0)).at(offset.max(0) as u64),
            || self.union.lseek(fh.0, offset, whence),
            none,
            |r| match r {
                Ok(o) => reply.offset(o),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    /// Inode flags (lsattr/chattr) are served (ops_extra.rs); any other ioctl gets ENOTTY,
    /// what a plain file answers, without a log line or a count: fuser's default answered
    /// ENOSYS after a warning of three lines, once for every terminal check on a redirected
    /// stdout (`cmd > file`): the log grew for as long as a container ran.
    pub(super) fn op_ioctl(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        flags: fuser::IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        reply: fuser::ReplyIoctl,
    ) {
        if !crate::union::ops_extra::is_fileattr_ioctl(cmd) {
            return reply.error(Errno::from_i32(libc::ENOTTY));
        }
        let dir = flags.contains(fuser::IoctlFlags::FUSE_IOCTL_DIR);
        self.run(
            Req::new(Op::Ioctl, On::Fh(ino.0, fh.0)).watch(ino.0),
            || self.union.fileattr_ioctl(ino.0, fh.0, dir, cmd, in_data),
            none,
            |r| match r {
                Ok(out) => reply.ioctl(0, &out),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    /// A regular file is always ready, as on ext4 (fuser's default answered ENOSYS).
    pub(super) fn op_poll(&self, ino: INodeNo, fh: FileHandle, reply: fuser::ReplyPoll) {
        self.run(
            Req::new(Op::Poll, On::Fh(ino.0, fh.0)),
            || self.union.file(fh.0).map(|_| ()),
            none,
            |r| match r {
                Ok(()) => reply.poll(fuser::PollEvents::from_bits_truncate(
                    crate::union::ops_extra::poll_ready(),
                )),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    #[allow(clippy::too_many_arguments)] // the protocol's argument list
    pub(super) fn op_copy_file_range(
        &self,
        req: &Request,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        reply: ReplyWrite,
    ) {
        self.run(
            Req::new(Op::CopyFileRange, On::Fh(ino_out.0, fh_out.0))
                .at(offset_out)
                .watch(ino_out.0),
            || {
                self.privs.before_write(&self.union, fh_out.0, req);
                self.union
                    .copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len)
            },
            |n| Out::bytes(*n),
            |r| match r {
                Ok(n) => reply.written(n.min(u32::MAX as usize) as u32),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }
}
