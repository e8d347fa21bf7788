//! Containers: their records on disk ([`record`]) and one module per verb. A container is
//! created (config written, no process), started under a supervisor that mounts its root
//! and runs its init, stopped or killed by signal, reconciled with what the kernel says
//! after a crash, and deleted with its files; commit, diff and export read its upper, and
//! exec runs another process in it.

pub mod attach;
pub mod attach_server;
pub mod commit;
pub mod cp;
mod cp_extract;
mod cp_tar;
mod cp_view;
pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod follow;
pub mod logfile;
pub mod logs;
pub mod options;
pub mod pause;
pub mod reconcile;
pub mod record;
pub mod rename;
pub mod restart;
pub mod start;
pub mod stats;
pub mod stop;
pub mod supervise;
pub mod top;
pub mod wait;

pub use create::{create, parse_memory, RunOptions};
pub use delete::{remove, remove_with_volumes};
pub use logs::{log_path, open_log};
pub use reconcile::reconcile;
pub use record::*;
pub use start::{detach, run, start};
pub use stop::{kill_container, parse_signal, stop};
pub use supervise::{cleanup, etc_binds, supervise, wait_forwarding, Io};
