//! The FUSE side: the adapter that turns protocol requests into union calls, passthrough,
//! the mount itself (mount.rs), the session that serves it (session.rs) and remount.

pub mod adapter;
pub mod mount;
pub(crate) mod passthrough;
pub mod remount;
pub(crate) mod request_guard;
pub mod session;
