//! strata-fs: a union / copy-on-write filesystem served over FUSE.
//!
//! The crate is grouped by concern (see ARCHITECTURE.md for the dependency rules):
//! - [`union`]: the FUSE-free core ([`union::fs::Union`]): name resolution across branches,
//!   whiteouts, copy-up, directory merging, the inode table, open handles and the operations.
//! - [`delta`]: block-delta files: the on-disk format, reading and writing through a chain,
//!   compaction, flattening and fsck.
//! - [`observe`]: tracing, per-op statistics and the control socket.
//! - [`fuse`]: the thin FUSE side: the protocol adapter, passthrough, the mount session.
//! - [`config`]: mount options, VFS flags and id maps.
//! - [`sys`]: every `unsafe` syscall wrapper; [`types`]: leaf types every layer shares.
//!
//! See `docs/format.md` for what strata writes into an upper directory.
#![deny(unsafe_code)]

pub mod config;
pub mod delta;
pub mod fuse;
pub mod observe;
pub mod sys;
pub mod types;
pub mod union;

pub use fuse::session::{prepare, serve, MountError};
pub use config::options::MountOptions;
pub use union::fs::Union;

// The paths cli/, runtime/ and fuzz/ name (`strata_fs::trace::parse_ops`, ...): the public
// API stays flat while the modules behind it are grouped by concern.
pub use config::options;
pub use delta::{flatten, fsck};
pub use fuse::{mount as fuse_mount, remount};
pub use observe::{control, stats, trace};
pub use union::{meta, ops_xattr};
