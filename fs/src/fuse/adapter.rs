//! The thin adapter from `fuser::Filesystem` to the union core: argument conversion,
//! errno replies, and the kernel cache settings. No union logic lives here.
//!
//! Every request goes through [`FuseAdapter::run`], which counts it in [`Stats`], logs a
//! failure at debug level, notices copy-ups (by comparing a node's placement before and
//! after) and, only when tracing is on, times it and hands a trace event to the writer.

use crate::union::attr::Attr;
use crate::union::handles::DirEntry;
use crate::union::ops_file::{SetAttr, SetTime};
use crate::fuse::passthrough::{Decision, Passthrough, Serve};
use crate::fuse::request_guard::guarded;
use crate::observe::stats::{errno_name, Move, Stats};
use crate::observe::trace::{Branch, Event, Op, Origin, Tracer};
use crate::union::fs::{err_no, Ctx, Layer, Union};
use fuser::{
    AccessFlags, BackingId, CopyFileRangeFlags, Errno, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Serves a [`Union`] to the kernel.
pub struct FuseAdapter {
    union: Arc<Union>,
    ttl: Duration,
    /// How each open handle is served (passthrough or daemon), decided per inode.
    pass: Passthrough,
    stats: Arc<Stats>,
    tracer: Option<Arc<Tracer>>,
    /// Block size of delta files (to count delta blocks written).
    delta_block: u64,
    /// set-id bits the kernel leaves to the daemon (privs.rs).
    privs: crate::union::privs::Privs,
}

/// What a request is about: enough to name it in the trace and the debug log.
#[derive(Debug, Clone, Copy)]
enum On<'a> {
    /// A node.
    Node(u64),
    /// A name in a directory node.
    Name(u64, &'a OsStr),
    /// An open file handle of a node.
    Fh(u64, u64),
    /// A rename: from (parent, name) to (parent, name).
    Rename(u64, &'a OsStr, u64, &'a OsStr),
    /// A new name (parent, name) for a node.
    Link(u64, u64, &'a OsStr),
}

/// One request as the adapter observes it.
struct Req<'a> {
    op: Op,
    on: On<'a>,
    off: Option<u64>,
    /// A node whose placement may change (copy-up): compared before and after.
    watch: Option<u64>,
}

impl<'a> Req<'a> {
    fn new(op: Op, on: On<'a>) -> Req<'a> {
        Req {
            op,
            on,
            off: None,
            watch: None,
        }
    }

    fn at(mut self, off: u64) -> Req<'a> {
        self.off = Some(off);
        self
    }

    fn watch(mut self, ino: u64) -> Req<'a> {
        self.watch = Some(ino);
        self
    }
}

/// What a finished request produced.
#[derive(Debug, Clone, Copy, Default)]
struct Out {
    errno: i32,
    bytes: Option<u64>,
    /// The node it found or made.
    ino: u64,
    /// The file handle it opened.
    fh: Option<u64>,
}

impl Out {
    fn bytes(n: usize) -> Out {
        Out {
            bytes: Some(n as u64),
            ..Out::default()
        }
    }

    fn node(a: &Attr) -> Out {
        Out {
            ino: a.ino,
            ..Out::default()
        }
    }
}

fn none<T>(_: &T) -> Out {
    Out::default()
}

/// What a node went through, from its origin before and after a request.
fn moved((before, was_dir): (Origin, bool), (after, _): (Origin, bool)) -> Option<Move> {
    match (before, after) {
        (Origin::Lower(_), Origin::Upper) if was_dir => Some(Move::Dir),
        (Origin::Lower(_) | Origin::MetaCopy(_), Origin::Upper) => Some(Move::Data(0)),
        (Origin::Lower(_), Origin::MetaCopy(_)) => Some(Move::Meta),
        (Origin::Lower(_) | Origin::MetaCopy(_), Origin::Delta(_)) => Some(Move::Delta),
        (Origin::Delta(_), Origin::Upper) => Some(Move::Whole),
        _ => None,
    }
}

fn errno(e: &io::Error) -> Errno {
    Errno::from_i32(err_no(e))
}

fn file_type(mode: u32) -> FileType {
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

fn fuse_attr(a: &Attr) -> fuser::FileAttr {
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

fn ctx(req: &Request, umask: u32) -> Ctx {
    Ctx {
        uid: req.uid(),
        gid: req.gid(),
        umask,
    }
}

fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(s) => SetTime::At(s),
    })
}

impl FuseAdapter {
    /// Wrap a union.
    pub fn new(union: Arc<Union>) -> FuseAdapter {
        let ttl = union.options().timeout;
        crate::delta::compact::start(&union);
        FuseAdapter {
            union,
            ttl,
            pass: Passthrough::default(),
            stats: Arc::new(Stats::default()),
            tracer: None,
            delta_block: crate::delta::format::DEFAULT_BLOCK,
            privs: crate::union::privs::Privs::default(),
        }
    }

    /// Where the session's notifier goes once the session exists.
    pub fn notifier_slot(&self) -> Arc<std::sync::OnceLock<fuser::Notifier>> {
        self.privs.notifier_slot()
    }

    /// Count requests in `stats` and trace them to `tracer` (when tracing is on).
    pub fn observed(mut self, stats: Arc<Stats>, tracer: Option<Arc<Tracer>>) -> FuseAdapter {
        self.stats = stats;
        self.tracer = tracer;
        let b = self.union.options().delta_block;
        self.delta_block = if b > 0 {
            b
        } else {
            crate::delta::format::DEFAULT_BLOCK
        };
        self
    }

    /// Serve one request: call the core, reply, then count (and maybe trace) it. With
    /// tracing off this adds no clock read and no allocation.
    #[inline]
    fn run<T>(
        &self,
        req: Req<'_>,
        call: impl FnOnce() -> io::Result<T>,
        info: impl FnOnce(&T) -> Out,
        reply: impl FnOnce(io::Result<T>),
    ) {
        let t = match &self.tracer {
            Some(tr) => tr.begin(req.op),
            None => None,
        };
        // A panic costs only this request: it is answered EIO (a reply dropped unsent
        // sends EIO too) and the thread goes on serving.
        let op = req.op.name();
        let before = guarded(op, || req.watch.and_then(|ino| self.union.origin(ino))).flatten();
        let r = guarded(op, || {
            if let (Op::Lookup, On::Name(_, name)) = (req.op, req.on) {
                crate::fuse::request_guard::test_panic_point(name);
            }
            call()
        })
        .unwrap_or_else(|| Err(io::Error::from_raw_os_error(libc::EIO)));
        let out = match &r {
            Ok(v) => guarded(op, || info(v)).unwrap_or_default(),
            Err(e) => Out {
                errno: err_no(e),
                ..Out::default()
            },
        };
        let lat = t.map(|t| t.elapsed());
        // What the request moved between branches is measured before the reply: once it
        // is out, the kernel may send the next request on that file (the write after an
        // open that copied it up) and the sizes would count that too.
        let mv = guarded(op, || self.moved_by(&req, before)).flatten();
        let _ = guarded(op, || reply(r));
        let _ = guarded(op, || self.finish(t.zip(lat), &req, mv, out));
    }

    /// The copy-up, metadata copy, delta ... a request made of its watched inode.
    fn moved_by(
        &self,
        req: &Req<'_>,
        before: Option<(Origin, bool)>,
    ) -> Option<(u64, Origin, Origin, Move)> {
        let (b, ino) = (before?, req.watch?);
        let a = self.union.origin(ino)?;
        let m = match moved(b, a)? {
            Move::Data(_) => Move::Data(self.union.getattr(ino).map_or(0, |a| a.size)),
            m => m,
        };
        Some((ino, b.0, a.0, m))
    }

    /// The bookkeeping after a reply went out.
    fn finish(
        &self,
        timed: Option<(Instant, Duration)>,
        req: &Req<'_>,
        mv: Option<(u64, Origin, Origin, Move)>,
        out: Out,
    ) {
        self.stats
            .request(req.op, out.errno, out.bytes.unwrap_or(0));
        if out.errno != 0 {
            tracing::debug!(
                op = req.op.name(),
                errno = out.errno,
                on = ?req.on,
                "request failed: {}",
                errno_name(out.errno)
            );
        }
        let mut delta_write = false;
        if req.op == Op::Write && out.errno == 0 {
            if let On::Fh(_, fh) = req.on {
                if self.union.file(fh).is_ok_and(|f| f.live_delta().is_some()) {
                    delta_write = true;
                    let off = req.off.unwrap_or(0);
                    let end = off.saturating_add(out.bytes.unwrap_or(0));
                    let blocks = end.div_ceil(self.delta_block) - off / self.delta_block;
                    self.stats.delta_write(blocks);
                }
            }
        }
        if let Some((_, _, _, m)) = mv {
            self.stats.moved(m);
        }
        let (Some(tr), Some((start, lat))) = (&self.tracer, timed) else {
            return;
        };
        let (path, to) = self.paths(req.on);
        if !tr.wants_path(&path) && !to.as_deref().is_some_and(|t| tr.wants_path(t)) {
            return;
        }
        let branch = if delta_write {
            Branch::Delta
        } else {
            self.branch_of(req.on, &out)
        };
        if let Some((_, b, a, m)) = mv {
            tr.send(Event {
                start,
                lat,
                op: Op::Copyup,
                path: path.clone(),
                to: None,
                branch: a.label(),
                from: b.label(),
                kind: Some(m.name()),
                off: None,
                size: match m {
                    Move::Data(n) => Some(n),
                    _ => None,
                },
                errno: 0,
            });
        }
        tr.send(Event {
            start,
            lat,
            op: req.op,
            path,
            to,
            branch,
            from: Branch::None,
            kind: None,
            off: req.off,
            size: out.bytes,
            errno: out.errno,
        });
    }

    /// Merged paths a request names (best effort), for the trace.
    fn paths(&self, on: On<'_>) -> (Vec<u8>, Option<Vec<u8>>) {
        match on {
            On::Node(ino) | On::Fh(ino, _) => (self.union.trace_path(ino, None), None),
            On::Name(p, n) => (self.union.trace_path(p, Some(n)), None),
            On::Rename(p, n, np, nn) => (
                self.union.trace_path(p, Some(n)),
                Some(self.union.trace_path(np, Some(nn))),
            ),
            On::Link(ino, np, nn) => (
                self.union.trace_path(ino, None),
                Some(self.union.trace_path(np, Some(nn))),
            ),
        }
    }

    /// The branch that served a request: an open handle's branch, else the node's.
    fn branch_of(&self, on: On<'_>, out: &Out) -> Branch {
        let fh = match on {
            On::Fh(_, fh) => Some(fh),
            _ => out.fh,
        };
        if let Some(f) = fh.and_then(|fh| self.union.file(fh).ok()) {
            return match (f.live_delta(), f.layer) {
                (Some(_), _) => Branch::Delta,
                (None, Layer::Upper) => Branch::Upper,
                (None, Layer::Lower(n)) => Branch::Lower(n),
            };
        }
        let node = match on {
            _ if out.ino != 0 => out.ino,
            On::Node(ino) | On::Fh(ino, _) => ino,
            // A failed name op (a lookup of nothing) was served by no branch.
            _ if out.errno != 0 => return Branch::None,
            On::Link(ino, _, _) => ino,
            On::Name(p, _) | On::Rename(_, _, p, _) => p,
        };
        self.union
            .origin(node)
            .map_or(Branch::None, |(o, _)| o.label())
    }

    /// How to answer the open of handle `fh` of `ino`: passed through to its branch file
    /// when the kernel can take it (registered with `register`), else served here.
    /// A `watched` handle (privs.rs) must have its writes reach the daemon.
    fn open_mode(
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

    fn entry(&self, reply: ReplyEntry, r: io::Result<Attr>) {
        match r {
            Ok(a) => reply.entry(&self.ttl, &fuse_attr(&a), Generation(a.generation)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn attr(&self, reply: ReplyAttr, r: io::Result<Attr>) {
        match r {
            Ok(a) => reply.attr(&self.ttl, &fuse_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Fill a readdirplus reply from a listing, looking each entry up.
    fn readdirplus_reply(
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

    fn data(reply: ReplyData, r: io::Result<Vec<u8>>) {
        match r {
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn empty(reply: ReplyEmpty, r: io::Result<()>) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn xattr_reply(reply: ReplyXattr, size: u32, r: io::Result<Vec<u8>>) {
        match r {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Open flags for a handle the daemon serves through the page cache.
    fn cache_flags(&self) -> FopenFlags {
        // strata is the only writer of the branches and every write goes through this
        // page cache, so cached pages stay valid across opens (even across copy-up, which
        // keeps the bytes). A traced mount drops them at open, so each open's reads show.
        if self.tracer.is_some() {
            FopenFlags::empty()
        } else {
            FopenFlags::FOPEN_KEEP_CACHE
        }
    }

    fn dir_entries(&self, fh: FileHandle, offset: u64) -> io::Result<Arc<Vec<DirEntry>>> {
        self.union.readdir(fh.0, offset).map(|(e, _)| e)
    }
}

impl Filesystem for FuseAdapter {
    fn destroy(&mut self) {
        // No request is in flight any more: end background compaction between two chunks.
        self.union.stop_background();
    }

    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Passthrough hands whole-file I/O to the kernel; it needs CAP_SYS_ADMIN and rules
        // out the writeback cache.
        if self.union.options().passthrough
            && nix::unistd::geteuid().is_root()
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            self.pass.enable();
        }
        let wanted = [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_WRITEBACK_CACHE,
            InitFlags::FUSE_ASYNC_DIO,
            InitFlags::FUSE_BIG_WRITES,
            InitFlags::FUSE_MAX_PAGES,
        ];
        for f in wanted {
            if f == InitFlags::FUSE_WRITEBACK_CACHE && self.pass.enabled() {
                continue;
            }
            if config.add_capabilities(f).is_ok() && f == InitFlags::FUSE_WRITEBACK_CACHE {
                self.union.set_writeback_cache(true);
            }
        }
        // The kernel enforces POSIX ACLs and leaves the umask to strata, which applies it
        // or a parent's default ACL (acl.rs). Not without xattrs: nothing could be read.
        if !self.union.options().no_xattrs {
            let _ = config.add_capabilities(InitFlags::FUSE_POSIX_ACL | InitFlags::FUSE_DONT_MASK);
        }
        // Shared mmap of a direct-I/O handle (privs.rs serves some so) works.
        let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        // File handles: strata cannot find a node by number once the kernel has forgotten
        // it (LOOKUP of "." on that number), so it refuses them as overlayfs without
        // nfs_export does (docs/handles-and-flags.md) rather than hand out ones that go stale.
        let _ = config.add_capabilities(InitFlags::FUSE_NO_EXPORT_SUPPORT);
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.run(
            Req::new(Op::Lookup, On::Name(parent.0, name)),
            || self.union.lookup(parent.0, name),
            Out::node,
            |r| self.entry(reply, r),
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
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

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.run(
            Req::new(Op::Getattr, On::Node(ino.0)),
            || self.union.getattr(ino.0),
            none,
            |r| self.attr(reply, r),
        );
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
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
        let sa = crate::union::privs::truncate_attr(&self.union, ino.0, &sa, &crate::union::privs::caller(req));
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

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.run(
            Req::new(Op::Readlink, On::Node(ino.0)),
            || self.union.readlink(ino.0),
            |v| Out::bytes(v.len()),
            |r| Self::data(reply, r),
        );
    }

    fn mknod(
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

    fn mkdir(
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

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.run(
            Req::new(Op::Unlink, On::Name(parent.0, name)).watch(parent.0),
            || self.union.unlink(parent.0, name),
            none,
            |r| Self::empty(reply, r),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.run(
            Req::new(Op::Rmdir, On::Name(parent.0, name)).watch(parent.0),
            || self.union.rmdir(parent.0, name),
            none,
            |r| Self::empty(reply, r),
        );
    }

    fn symlink(
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

    fn rename(
        &self,
        _req: &Request,
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

    fn link(
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

    fn open(&self, request: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
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

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.run(
            Req::new(Op::Read, On::Fh(ino.0, fh.0)).at(offset),
            || self.union.read(fh.0, offset, size),
            |v| Out::bytes(v.len()),
            |r| Self::data(reply, r),
        );
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
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

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.run(
            Req::new(Op::Flush, On::Fh(ino.0, fh.0)),
            || Ok(()),
            none,
            |_| reply.ok(),
        );
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
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

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.run(
            Req::new(Op::Fsync, On::Fh(ino.0, fh.0)),
            || self.union.fsync(fh.0, datasync),
            none,
            |r| Self::empty(reply, r),
        );
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.run(
            Req::new(Op::Opendir, On::Node(ino.0)),
            || self.union.opendir(ino.0),
            none,
            |r| match r {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.run(
            Req::new(Op::Readdir, On::Node(ino.0)).at(offset),
            || self.dir_entries(fh, offset),
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

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        self.run(
            Req::new(Op::Readdirplus, On::Node(ino.0)).at(offset),
            || self.dir_entries(fh, offset),
            none,
            |r| self.readdirplus_reply(ino, offset, reply, r),
        );
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
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

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.run(
            Req::new(Op::Fsyncdir, On::Node(ino.0)),
            || self.union.fsyncdir(ino.0),
            none,
            |r| Self::empty(reply, r),
        );
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        self.run(
            Req::new(Op::Statfs, On::Node(ino.0)),
            || self.union.statfs(),
            none,
            |r| match r {
                Ok(s) => reply.statfs(
                    s.blocks(),
                    s.blocks_free(),
                    s.blocks_available(),
                    s.files(),
                    s.files_free(),
                    s.block_size() as u32,
                    255,
                    s.fragment_size() as u32,
                ),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
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

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.run(
            Req::new(Op::Getxattr, On::Node(ino.0)),
            || self.union.getxattr(ino.0, name),
            |v| Out::bytes(v.len()),
            |r| Self::xattr_reply(reply, size, r),
        );
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.run(
            Req::new(Op::Listxattr, On::Node(ino.0)),
            || self.union.listxattr(ino.0),
            |v| Out::bytes(v.len()),
            |r| Self::xattr_reply(reply, size, r),
        );
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.run(
            Req::new(Op::Removexattr, On::Node(ino.0)).watch(ino.0),
            || self.union.removexattr(ino.0, name),
            none,
            |r| Self::empty(reply, r),
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // default_permissions makes the kernel check modes; we only confirm existence.
        self.run(
            Req::new(Op::Access, On::Node(ino.0)),
            || self.union.getattr(ino.0).map(|_| ()),
            none,
            |r| Self::empty(reply, r),
        );
    }

    fn create(
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

    fn fallocate(
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

    fn lseek(
        &self,
        _req: &Request,
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
    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        flags: fuser::IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        _out_size: u32,
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
    fn poll(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _ph: fuser::PollNotifier,
        _events: fuser::PollEvents,
        _flags: fuser::PollFlags,
        reply: fuser::ReplyPoll,
    ) {
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

    fn copy_file_range(
        &self,
        req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
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
