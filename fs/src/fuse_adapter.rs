//! The thin adapter from `fuser::Filesystem` to the union core: argument conversion,
//! errno replies, and the kernel cache settings. No union logic lives here.

use crate::attr::Attr;
use crate::handles::DirEntry;
use crate::ops_file::{SetAttr, SetTime};
use crate::union::{err_no, Ctx, Layer, Union};
use fuser::{
    AccessFlags, BackingId, CopyFileRangeFlags, Errno, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A backing file registered with the kernel for passthrough I/O, shared by all open
/// handles of one inode (the kernel requires one backing file per inode at a time).
struct Backing {
    id: Arc<BackingId>,
    layer: Layer,
    users: usize,
}

/// Serves a [`Union`] to the kernel.
pub struct FuseAdapter {
    union: Arc<Union>,
    ttl: Duration,
    passthrough: bool,
    backings: Mutex<HashMap<u64, Backing>>,
    /// File handles opened with passthrough, and their inode.
    passthrough_fh: Mutex<HashMap<u64, u64>>,
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
        FuseAdapter {
            union,
            ttl,
            passthrough: false,
            backings: Mutex::new(HashMap::new()),
            passthrough_fh: Mutex::new(HashMap::new()),
        }
    }

    /// The backing id to pass an open of `ino` through to `fh`'s branch file, if the kernel
    /// can take it: None means "serve this handle's I/O in the daemon".
    fn backing_for(
        &self,
        ino: u64,
        fh: u64,
        register: impl FnOnce(&std::fs::File) -> io::Result<BackingId>,
    ) -> Option<Arc<BackingId>> {
        if !self.passthrough {
            return None;
        }
        let f = self.union.file(fh).ok()?;
        if f.delta.is_some() {
            // A delta merges two files: only the daemon can serve it.
            return None;
        }
        let mut backings = self.backings.lock();
        let id = match backings.get_mut(&ino) {
            Some(b) if b.layer == f.layer => {
                b.users += 1;
                b.id.clone()
            }
            // Another branch file already backs this inode (a reader of the lower copy
            // while the upper copy is written): this handle goes through the daemon.
            Some(_) => return None,
            None => match register(&f.file) {
                Ok(id) => {
                    let id = Arc::new(id);
                    backings.insert(
                        ino,
                        Backing {
                            id: id.clone(),
                            layer: f.layer,
                            users: 1,
                        },
                    );
                    id
                }
                Err(e) => {
                    tracing::debug!(ino, "passthrough not available for this file: {e}");
                    return None;
                }
            },
        };
        self.passthrough_fh.lock().insert(fh, ino);
        Some(id)
    }

    /// A handle closed: release its share of the inode's backing file.
    fn release_backing(&self, fh: u64) {
        let Some(ino) = self.passthrough_fh.lock().remove(&fh) else {
            return;
        };
        let mut backings = self.backings.lock();
        if let Some(b) = backings.get_mut(&ino) {
            b.users = b.users.saturating_sub(1);
            if b.users == 0 {
                backings.remove(&ino);
            }
        }
    }

    fn entry(&self, reply: ReplyEntry, r: io::Result<Attr>) {
        match r {
            Ok(a) => reply.entry(&self.ttl, &fuse_attr(&a), Generation(a.generation)),
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

    /// Open flags for a handle whose I/O the daemon serves: while another handle of the
    /// same inode is passed through, the kernel only allows direct I/O beside it.
    fn daemon_io_flags(&self, ino: u64) -> FopenFlags {
        if self.passthrough && self.backings.lock().contains_key(&ino) {
            FopenFlags::FOPEN_DIRECT_IO
        } else {
            FopenFlags::empty()
        }
    }

    fn dir_entries(&self, fh: FileHandle, offset: u64) -> io::Result<Arc<Vec<DirEntry>>> {
        self.union.readdir(fh.0, offset).map(|(e, _)| e)
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Passthrough hands whole-file I/O to the kernel; it needs CAP_SYS_ADMIN and rules
        // out the writeback cache.
        if self.union.options().passthrough
            && nix::unistd::geteuid().is_root()
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            self.passthrough = true;
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
            if f == InitFlags::FUSE_WRITEBACK_CACHE && self.passthrough {
                continue;
            }
            if config.add_capabilities(f).is_ok() && f == InitFlags::FUSE_WRITEBACK_CACHE {
                self.union.set_writeback_cache(true);
            }
        }
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.entry(reply, self.union.lookup(parent.0, name));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.union.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.union.getattr(ino.0) {
            Ok(a) => reply.attr(&self.ttl, &fuse_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
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
        match self.union.setattr(ino.0, &sa) {
            Ok(a) => reply.attr(&self.ttl, &fuse_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.union.readlink(ino.0) {
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(errno(&e)),
        }
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
        let r = self
            .union
            .mknod(parent.0, name, mode, u64::from(rdev), &ctx(req, umask));
        self.entry(reply, r);
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
        self.entry(
            reply,
            self.union.mkdir(parent.0, name, mode, &ctx(req, umask)),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(reply, self.union.unlink(parent.0, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(reply, self.union.rmdir(parent.0, name));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let r = self
            .union
            .symlink(parent.0, link_name, target.as_os_str(), &ctx(req, 0));
        self.entry(reply, r);
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
        Self::empty(
            reply,
            self.union
                .rename(parent.0, name, newparent.0, newname, flags.bits()),
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
        let r = self.union.link(ino.0, newparent.0, newname, &ctx(req, 0));
        self.entry(reply, r);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fh = match self.union.open(ino.0, flags.0) {
            Ok(fh) => fh,
            Err(e) => return reply.error(errno(&e)),
        };
        match self.backing_for(ino.0, fh, |f| reply.open_backing(f)) {
            Some(id) => reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id),
            None => reply.opened(FileHandle(fh), self.daemon_io_flags(ino.0)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.union.read(fh.0, offset, size) {
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.union.write(fh.0, offset, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.release_backing(fh.0);
        self.union.release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        Self::empty(reply, self.union.fsync(fh.0, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.union.opendir(ino.0) {
            // Every change to a directory goes through this mount, and the kernel drops its
            // cached listing when it sees one, so listings can be cached across opens.
            Ok(fh) => reply.opened(
                FileHandle(fh),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.dir_entries(fh, offset) {
            Ok(e) => e,
            Err(e) => return reply.error(errno(&e)),
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(e.ino), (i + 1) as u64, file_type(e.kind), &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let entries = match self.dir_entries(fh, offset) {
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

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.union.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        Self::empty(reply, self.union.fsyncdir(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.union.statfs() {
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
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        Self::empty(reply, self.union.setxattr(ino.0, name, value, flags));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        Self::xattr_reply(reply, size, self.union.getxattr(ino.0, name));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        Self::xattr_reply(reply, size, self.union.listxattr(ino.0));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(reply, self.union.removexattr(ino.0, name));
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // default_permissions makes the kernel check modes; we only confirm existence.
        Self::empty(reply, self.union.getattr(ino.0).map(|_| ()));
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
        match self
            .union
            .create(parent.0, name, mode, flags, &ctx(req, umask))
        {
            Ok((a, fh)) => match self.backing_for(a.ino, fh, |f| reply.open_backing(f)) {
                Some(id) => reply.created_passthrough(
                    &self.ttl,
                    &fuse_attr(&a),
                    Generation(a.generation),
                    FileHandle(fh),
                    FopenFlags::empty(),
                    &id,
                ),
                None => reply.created(
                    &self.ttl,
                    &fuse_attr(&a),
                    Generation(a.generation),
                    FileHandle(fh),
                    self.daemon_io_flags(a.ino),
                ),
            },
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        Self::empty(reply, self.union.fallocate(fh.0, offset, length, mode));
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        match self.union.lseek(fh.0, offset, whence) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        match self
            .union
            .copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len)
        {
            Ok(n) => reply.written(n.min(u32::MAX as usize) as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }
}
