//! Images: configs and the repositories file ([`config`]), `--change` instructions applied
//! to a run config ([`changes`]), and the image commands ([`commands`]).

pub mod changes;
pub mod commands;
pub mod config;

pub use config::*;
