//! strata-fs: a union / copy-on-write filesystem served over FUSE.
//!
//! The union core ([`union::Union`]) answers lookup/create/unlink/... on inode numbers and
//! knows nothing of FUSE; [`fuse_adapter`] is the thin layer that speaks the protocol.
//! See `docs/format.md` for what strata writes into an upper directory.
#![deny(unsafe_code)]

pub mod acl;
pub mod atime;
pub mod attr;
pub mod branch;
pub mod chain;
pub mod compact;
pub mod control;
mod control_server;
mod copyup;
pub mod delta;
mod delta_io;
mod delta_seek;
mod dirmerge;
pub mod flatten;
pub mod fsck;
pub mod fuse_adapter;
pub mod fuse_mount;
mod handles;
pub mod idmap;
pub mod index;
mod inode;
pub mod meta;
pub mod mount;
mod ops_dir;
pub mod ops_extra;
mod ops_file;
mod ops_new;
pub mod ops_xattr;
pub mod options;
pub mod owner_write;
mod passthrough;
pub mod privs;
pub mod remount;
mod request_guard;
mod resolve;
pub mod stats;
pub mod sys;
pub mod trace;
pub mod union;
pub mod vfs_flags;
pub mod whiteout;

pub use mount::{prepare, serve, MountError};
pub use options::MountOptions;
pub use union::Union;
