//! Mount configuration: `-o` options, the VFS mount flags they map to, id maps, and the
//! size syntax strata shares with `strata run --memory`.

pub mod idmap;
pub mod options;
pub mod size;
pub mod vfs_flags;
