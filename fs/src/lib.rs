//! strata-fs: a union / copy-on-write filesystem served over FUSE.
//!
//! The crate is grouped by concern:
//! - [`union`]: the FUSE-free core ([`union::fs::Union`]): name resolution across branches,
//!   whiteouts, copy-up, directory merging, the inode table, open handles and the operations.
//! - [`delta`]: block-delta files: the on-disk format, reading and writing through a chain,
//!   compaction, flattening and fsck.
//! - [`observe`]: tracing, per-op statistics and the control socket.
//! - [`fuse`]: the thin FUSE side: the protocol adapter, passthrough, the mount session.
//! - [`config`]: mount options, VFS flags and id maps.
//! - [`types`]: leaf types every layer shares. The syscall wrappers that need `unsafe` are
//!   in the `strata-sys` crate, shared with the runtime; this crate has no `unsafe`.
//!
//! Dependencies point one way, and `scripts/modcycles.py fs/src` (run by scripts/test)
//! checks that no module depends on itself through others: [`types`] depends on
//! nothing; the state types the union holds (`union::inode`, `union::handles`,
//! `union::chain`, `delta::file`, `union::atime`, `config`) do not name the union;
//! `union::fs` (the `Union` struct) names only those; every `impl Union` (ops_*.rs,
//! resolve.rs, copyup.rs, delta/io.rs, ...) depends on `union::fs`, never the other way;
//! `observe` and `fuse` sit on top. A request goes FUSE -> `fuse::adapter` (its group
//! file) -> a `Union` operation (`union::ops_*`) -> `resolve`/`copyup`/`delta::io` -> the
//! branch files through `union::branch` and `strata_sys` (never following a branch's symlinks).
//!
//! See `docs/format.md` for what strata writes into an upper directory.
#![deny(unsafe_code)]

pub mod config;
pub mod delta;
pub mod fuse;
pub mod observe;
pub mod types;
pub mod union;

pub use config::options::MountOptions;
pub use fuse::session::{prepare, serve, MountError};
pub use union::fs::Union;
