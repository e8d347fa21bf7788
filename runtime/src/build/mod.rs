//! `strata build`: the Dockerfile front end and the build engine.

pub mod add_archive;
pub mod cache;
pub mod context;
pub mod copy_opts;
pub mod dockerfile;
pub mod dockerignore;
pub mod engine;
pub mod step_output;
pub mod steps;
