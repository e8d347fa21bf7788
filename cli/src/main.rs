//! The `strata` command: docker-like subcommands plus a mount mode compatible with
//! fuse-overlayfs (`strata -o lowerdir=..,upperdir=..,workdir=.. MOUNTPOINT`).

mod changes_cmd;
mod containers;
mod images_cmd;
mod logging;
mod mount;
mod network_cmd;
mod tools;
mod trace_cmd;
mod transfer_cmd;

use clap::{CommandFactory, Parser, Subcommand};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use strata_runtime::store::Store;

/// strata: a union / copy-on-write filesystem over FUSE and a small container runtime.
#[derive(Parser, Debug)]
#[command(name = "strata", version, about, propagate_version = true)]
struct Cli {
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "warn")]
    log_level: String,
    /// Store directory (default /var/lib/strata as root, $XDG_DATA_HOME/strata otherwise)
    // Global, as docker's flags: `strata --root DIR ps` and `strata ps --root DIR` both work.
    #[arg(long, value_name = "DIR", global = true)]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mount a union of branches (options as fuse-overlayfs: -o lowerdir=A:B,upperdir=U,workdir=W).
    Mount(mount::MountArgs),
    /// Unmount a strata mount (lazy detach as a last resort).
    Umount(mount::UmountArgs),
    /// Check the strata records (deltas, metadata) in an upper directory; --repair fixes
    /// what is safe to fix.
    Fsck(tools::FsckArgs),
    /// Make the delta files at PATHs (inside a mounted strata union) whole copies now.
    Compact(tools::CompactArgs),
    /// Read traces written by `strata mount --trace` (see docs/tracing.md).
    Trace(trace_cmd::TraceArgs),
    /// Which branch serves each PATH of a mounted strata union (upper, lower N, delta,
    /// whiteout, ...).
    Whence(trace_cmd::WhenceArgs),
    /// Live counters of a mounted strata union.
    Stats(trace_cmd::StatsArgs),
    // The docker-like groups, flattened so that their subcommands are top-level ones. This
    // order is the order of `strata --help`.
    #[command(flatten)]
    Images(images_cmd::ImageCmd),
    #[command(flatten)]
    Containers(containers::ContainerCmd),
    #[command(flatten)]
    Transfer(transfer_cmd::TransferCmd),
    #[command(flatten)]
    Changes(changes_cmd::ChangesCmd),
    #[command(flatten)]
    Network(network_cmd::NetworkTop),
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let names: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .chain(["help".to_string()])
        .collect();
    let argv = mount::rewrite_helper_form(argv, &names);
    let Cli {
        log_level,
        root,
        command,
    } = Cli::parse_from(argv);
    let root = root.as_deref();
    let result = match command {
        Command::Mount(args) => mount::run_mount(args, &log_level),
        Command::Umount(args) => {
            logging::init_stderr(&log_level);
            mount::run_umount(args)
        }
        Command::Fsck(args) => tools::run_fsck(args, root.map(Path::to_path_buf)),
        Command::Compact(args) => tools::run_compact(args),
        Command::Trace(args) => trace_cmd::run_trace(args),
        Command::Whence(args) => trace_cmd::run_whence(args),
        Command::Stats(args) => trace_cmd::run_stats(args),
        Command::Images(cmd) => with_store(&log_level, root, |s| images_cmd::run(s, cmd)),
        Command::Containers(cmd) => with_store(&log_level, root, |s| containers::run(s, cmd)),
        Command::Transfer(cmd) => with_store(&log_level, root, |s| transfer_cmd::run(s, cmd)),
        Command::Changes(cmd) => with_store(&log_level, root, |s| changes_cmd::run(s, cmd)),
        Command::Network(cmd) => with_store(&log_level, root, |s| network_cmd::run(s, cmd)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Log to stderr and open the store for one of the docker-like commands.
fn with_store(
    log_level: &str,
    root: Option<&Path>,
    run: impl FnOnce(&Store) -> strata_runtime::Result<()>,
) -> Result<(), String> {
    logging::init_stderr(log_level);
    let store = Store::open(root).map_err(|e| e.to_string())?;
    run(&store).map_err(|e| e.to_string())
}
