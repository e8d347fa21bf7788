//! strata's container runtime and image store: layers, images, containers, storage drivers,
//! namespaces, cgroups and the container init.

pub mod caps;
pub mod cgroups;
pub mod changes;
pub mod commit;
pub mod container;
pub mod diff;
pub mod driver;
pub mod exec;
pub mod image;
pub mod images;
pub mod init;
pub mod layer;
pub mod layertar;
pub mod log_follow;
pub mod native;
pub mod plain;
pub mod process;
pub mod pty;
pub mod rootfs;
pub mod rootless;
pub mod run;
pub mod store;
pub mod sys;
pub mod tar_import;
pub mod transfer;
pub mod treecopy;
pub mod user;
pub mod util;

pub use util::{Error, Result};
