//! Observation: the per-request trace, per-op statistics and the control socket they are
//! read through. None of it changes what a request does.

pub mod control;
pub mod control_server;
pub mod filter;
pub mod stats;
pub mod trace;
