//! strata's container runtime and image store: layers, images, containers, storage drivers,
//! namespaces, cgroups and the container init.

// Every unsafe block lives in `sys`; a caller of an unsafe wrapper there allows it at the
// call and says why it holds.
#![deny(unsafe_code)]

pub mod container;
pub mod driver;
pub mod image;
pub mod isolation;
pub mod layer;
pub mod network;
pub mod process;
pub mod spec;
pub mod store;
#[allow(unsafe_code)]
pub mod sys;
pub mod transfer;
pub mod util;

pub use util::{Error, Result};

// The flat paths cli/ used before the folders, kept while cli/ is being split so the two
// changes merge without conflicts; callers move to the folder paths after that lands.
pub use container::{commit, exec};
pub use image::commands as images;
pub use isolation::cgroups;

/// Rootless operation under its old path (see above).
pub mod rootless {
    pub use crate::container::enter_for_container;
    pub use crate::isolation::rootless::*;
}

/// Native commit under its old path (see above).
pub mod native {
    pub use crate::image::commands::fsck_image;
    pub use crate::layer::native::*;
}

/// The container verbs under their old `run` path (see above).
pub mod run {
    pub use crate::container::{
        kill_container, open_log, parse_signal, reconcile, remove, run, start, stop, RunOptions,
    };
}
