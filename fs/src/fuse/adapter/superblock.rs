//! The session: init (kernel capabilities and caching), destroy, statfs (overlayfs super.c).

use super::reply::errno;
use super::request::{none, On, Req};
use super::FuseAdapter;
use crate::observe::trace::Op;
use fuser::{INodeNo, InitFlags, KernelConfig, ReplyStatfs};
use std::io;

impl FuseAdapter {
    pub(super) fn op_destroy(&mut self) {
        // No request is in flight any more: end background compaction between two chunks.
        self.union.stop_background();
    }

    pub(super) fn op_init(&mut self, config: &mut KernelConfig) -> io::Result<()> {
        // Passthrough hands whole-file I/O to the kernel; it needs CAP_SYS_ADMIN and rules
        // out the writeback cache.
        if self.union.options().passthrough
            && nix::unistd::geteuid().is_root()
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            self.pass.enable();
        }
        // Every listing is a readdirplus (no FUSE_READDIRPLUS_AUTO): the kernel's heuristic
        // sends plain readdirs after the first chunk of a large directory when nothing was
        // stat'ed between the chunks, and `find`/`ls -l`/fts read a whole directory before
        // stat'ing its entries, so each entry cost a LOOKUP round trip of its own (100k lower
        // files: 80k requests instead of 800, find -printf cold 3.8 s -> 2.05 s). A listing
        // nobody stats pays the lookups (names-only find cold 1.49 s -> 1.89 s); bench/RESULTS.md.
        let wanted = [
            InitFlags::FUSE_DO_READDIRPLUS,
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

    pub(super) fn op_statfs(&self, ino: INodeNo, reply: ReplyStatfs) {
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
}
