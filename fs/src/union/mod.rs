//! The union core: everything that answers a request on inode numbers without knowing FUSE.
//!
//! [`fs::Union`] holds the branches and tables; name resolution across branches is in
//! resolve.rs, copy-up in copyup.rs, directory merging in dirmerge.rs, the operations in
//! ops_*.rs (like the kernel overlayfs' namei.c / dir.c / copy_up.c / readdir.c / inode.c).

pub mod acl;
pub mod atime;
pub mod attr;
pub mod branch;
pub mod chain;
pub(crate) mod chain_open;
pub(crate) mod copyup;
pub(crate) mod dirmerge;
pub mod fs;
pub(crate) mod handles;
pub mod index;
pub(crate) mod inode;
pub mod lazy_fill;
pub(crate) mod lower_marks;
pub mod meta;
pub(crate) mod ops_dir;
pub mod ops_extra;
pub(crate) mod ops_file;
pub(crate) mod ops_new;
pub(crate) mod ops_readdir;
pub(crate) mod ops_rename;
pub mod ops_xattr;
pub mod origin;
pub mod owner_write;
pub mod privs;
pub(crate) mod resolve;
pub mod whiteout;
