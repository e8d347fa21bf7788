//! The `strata` command: docker-like subcommands plus a mount mode compatible with
//! fuse-overlayfs (`strata -o lowerdir=..,upperdir=..,workdir=.. MOUNTPOINT`).

mod containers;
mod logging;
mod mount;
mod tools;
mod trace_cmd;
mod transfer_cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::process::ExitCode;

/// strata: a union / copy-on-write filesystem over FUSE and a small container runtime.
#[derive(Parser, Debug)]
#[command(name = "strata", version, about, propagate_version = true)]
struct Cli {
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "warn")]
    log_level: String,
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
    /// Image store and container commands.
    #[command(flatten)]
    Containers(containers::ContainerCommand),
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let names: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .chain(["help".to_string()])
        .collect();
    let argv = mount::rewrite_helper_form(argv, &names);
    let matches = Cli::command().get_matches_from(argv);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Mount(args) => mount::run_mount(args, &cli.log_level),
        Command::Umount(args) => {
            logging::init_stderr(&cli.log_level);
            mount::run_umount(args)
        }
        Command::Fsck(args) => tools::run_fsck(args, containers::store_root(&matches)),
        Command::Compact(args) => tools::run_compact(args),
        Command::Trace(args) => trace_cmd::run_trace(args),
        Command::Whence(args) => trace_cmd::run_whence(args),
        Command::Stats(args) => trace_cmd::run_stats(args),
        Command::Containers(cmd) => {
            logging::init_stderr(&cli.log_level);
            containers::run(cmd)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e}");
            ExitCode::FAILURE
        }
    }
}
