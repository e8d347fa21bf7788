//! `strata snapshotter`: serve containerd's snapshots API as a proxy plugin.

use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct SnapshotterArgs {
    /// Unix socket to serve on (containerd's `[proxy_plugins.strata] address`).
    #[arg(
        long,
        value_name = "SOCK",
        default_value = "/run/strata/snapshotter.sock"
    )]
    address: PathBuf,
}

/// Run until SIGINT/SIGTERM. ROOT is the global `--root DIR` when given (snapshots in
/// DIR/snapshots/ID, metadata in DIR/metadata.json), else `snapshotter/` in the default
/// store directory.
pub fn run(args: SnapshotterArgs, log_level: &str, root: Option<&Path>) -> Result<(), String> {
    crate::logging::init_stderr(log_level);
    let root = match root {
        Some(r) => r.to_path_buf(),
        None => strata_runtime::store::Store::default_root()
            .map_err(|e| e.to_string())?
            .join("snapshotter"),
    };
    strata_snapshotter::serve(&args.address, &root).map_err(|e| e.to_string())
}
