//! Leaf types every part of the crate shares: which branch, who is asking, errno helpers.
//!
//! Nothing here depends on another module of the crate, so the core, the delta code, the
//! observers and the FUSE side can all name these without depending on each other.

use std::io;

/// Which branch an operation touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The writable branch.
    Upper,
    /// Lower branch N (0 = topmost).
    Lower(usize),
}

/// Who is asking: credentials of the calling process, as seen inside the mount.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// Caller's fsuid.
    pub uid: u32,
    /// Caller's fsgid.
    pub gid: u32,
    /// Caller's umask.
    pub umask: u32,
}

/// An io::Error from an errno value.
pub(crate) fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// EROFS.
pub(crate) fn erofs() -> io::Error {
    errno(libc::EROFS)
}

/// The errno of an io::Error (EIO when it has none).
pub fn err_no(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}
