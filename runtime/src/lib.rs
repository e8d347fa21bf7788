//! strata's container runtime and image store: layers, images, containers, storage drivers,
//! namespaces, cgroups and the container init.
//!
//! The syscall wrappers that need `unsafe` live in the `strata-sys` crate; a caller of an
//! unsafe one (`fork`) allows it at the call and says why its contract holds.
#![deny(unsafe_code)]

pub mod build;
pub mod container;
pub mod driver;
pub mod image;
pub mod interrupt;
pub mod isolation;
pub mod layer;
pub mod network;
pub mod process;
pub mod spec;
pub mod store;
pub mod transfer;
pub mod util;
pub mod volume;

pub use util::{Error, Result};
