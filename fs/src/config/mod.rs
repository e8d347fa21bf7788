//! Mount configuration: `-o` options, the VFS mount flags they map to, and id maps.

pub mod idmap;
pub mod options;
pub mod vfs_flags;
