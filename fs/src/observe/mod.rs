//! Observation: the per-request trace, per-op statistics and the control socket they are
//! read through. None of it changes what a request does.

pub mod control;
pub(crate) mod control_server;
pub mod stats;
pub mod trace;
