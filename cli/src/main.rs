//! The `strata` command: docker-like subcommands plus a mount mode compatible with
//! fuse-overlayfs (`strata -o lowerdir=..,upperdir=..,workdir=.. MOUNTPOINT`).
//!
//! No `unsafe` here: the syscall wrappers are in `strata-sys`.
#![deny(unsafe_code)]

// First: its macros (outln!, out!) are used by every module after it.
#[macro_use]
mod output;

mod bool_flags;
mod build_cmd;
mod changes_cmd;
mod containers;
mod docker_cmds;
mod docker_json;
mod format;
mod groups;
mod images_cmd;
mod logging;
mod mount;
mod network_cmd;
mod ps_filter;
mod snapshotter_cmd;
mod system_cmd;
mod tools;
mod trace_cmd;
mod transfer_cmd;
mod volume_cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use strata_runtime::store::Store;

/// strata: a union (copy-on-write) filesystem over FUSE and a docker-compatible container runtime.
#[derive(Parser, Debug)]
// No propagate_version: `strata run --version` would print `strata-run X`; `strata
// --version` and `strata version` say which strata this is.
#[command(name = "strata", version)]
struct Cli {
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(
        long,
        global = true,
        default_value = "warn",
        help_heading = "Global options"
    )]
    log_level: String,
    /// Store directory (default /var/lib/strata as root, $XDG_DATA_HOME/strata otherwise)
    // Global, as docker's flags: `strata --root DIR ps` and `strata ps --root DIR` both work.
    #[arg(
        long,
        value_name = "DIR",
        global = true,
        help_heading = "Global options"
    )]
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
    /// The filesystem tools: mount, umount, fsck, compact, trace, whence, stats.
    Fs {
        #[command(subcommand)]
        cmd: groups::FsCmd,
    },
    /// Manage containers (ls, rm, inspect, prune, and every container command).
    Container {
        #[command(subcommand)]
        cmd: groups::ContainerGroup,
    },
    /// Manage images (ls, rm, inspect, history, tag, import, prune, pull, push, save, load).
    Image {
        #[command(subcommand)]
        cmd: groups::ImageGroup,
    },
    // The docker-like groups, flattened so that their subcommands are top-level ones.
    #[command(flatten)]
    Images(images_cmd::ImageCmd),
    #[command(flatten)]
    Containers(containers::ContainerCmd),
    #[command(flatten)]
    More(docker_cmds::MoreCmd),
    #[command(flatten)]
    Transfer(transfer_cmd::TransferCmd),
    #[command(flatten)]
    Changes(changes_cmd::ChangesCmd),
    #[command(flatten)]
    System(system_cmd::SystemCmd),
    /// Build an image from a Dockerfile.
    Build(build_cmd::BuildArgs),
    /// Manage the build cache (prune).
    #[command(subcommand)]
    Builder(build_cmd::BuilderCmd),
    /// Manage named volumes (create, ls, inspect, rm, prune).
    #[command(subcommand)]
    Volume(volume_cmd::VolumeCmd),
    /// Manage networks (create, ls, inspect, rm, connect, disconnect, prune).
    #[command(subcommand)]
    Network(network_cmd::NetworkCmd),
    /// Serve containerd's snapshots API on a unix socket (a proxy plugin); --root DIR
    /// holds the snapshots.
    Snapshotter(snapshotter_cmd::SnapshotterArgs),
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cmd = Cli::command();
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .chain(["help".to_string()])
        .collect();
    let argv = mount::rewrite_helper_form(argv, &names);
    let Cli {
        log_level,
        root,
        command,
    } = parse(cmd, argv);
    let root = root.as_deref();
    // `import -q` prints the id only: warnings are off for it.
    let log_level = match &command {
        Command::Images(images_cmd::ImageCmd::Import(a)) if a.quiet => "error".to_string(),
        _ => log_level,
    };
    let result = match command {
        Command::Mount(args) => groups::run_fs(groups::FsCmd::Mount(args), &log_level, root),
        Command::Umount(args) => groups::run_fs(groups::FsCmd::Umount(args), &log_level, root),
        Command::Fsck(args) => groups::run_fs(groups::FsCmd::Fsck(args), &log_level, root),
        Command::Compact(args) => groups::run_fs(groups::FsCmd::Compact(args), &log_level, root),
        Command::Trace(args) => groups::run_fs(groups::FsCmd::Trace(args), &log_level, root),
        Command::Whence(args) => groups::run_fs(groups::FsCmd::Whence(args), &log_level, root),
        Command::Fs { cmd } => groups::run_fs(cmd, &log_level, root),
        Command::Container { cmd } => {
            with_store(&log_level, root, |s| groups::run_container(s, cmd))
        }
        Command::Image { cmd } => with_store(&log_level, root, |s| groups::run_image(s, cmd)),
        Command::Images(cmd) => with_store(&log_level, root, |s| images_cmd::run(s, cmd)),
        Command::Containers(cmd) => with_store(&log_level, root, |s| containers::run(s, cmd)),
        Command::More(cmd) => with_store(&log_level, root, |s| docker_cmds::run(s, cmd)),
        Command::Transfer(cmd) => with_store(&log_level, root, |s| transfer_cmd::run(s, cmd)),
        Command::Changes(cmd) => with_store(&log_level, root, |s| changes_cmd::run(s, cmd)),
        Command::System(cmd) => with_store(&log_level, root, |s| system_cmd::run(s, cmd)),
        Command::Build(a) => with_store(&log_level, root, |s| build_cmd::run(s, a)),
        Command::Builder(c) => with_store(&log_level, root, |s| build_cmd::run_builder(s, c)),
        Command::Volume(cmd) => with_store(&log_level, root, |s| volume_cmd::run(s, cmd)),
        Command::Network(cmd) => with_store(&log_level, root, |s| network_cmd::run(s, cmd)),
        Command::Snapshotter(args) => snapshotter_cmd::run(args, &log_level, root),
    };
    // Interrupted (Ctrl-C during a pull): the error is the staging removed under the
    // command, not worth a message; the cleaning thread ends the process once it is done.
    if let Some(sig) = strata_runtime::interrupt::interrupted() {
        strata_runtime::interrupt::finish(sig);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Streaming to a closed stdout (`strata save img | head -c1`): quiet, as for outln!.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::from(output::BROKEN_PIPE_STATUS as u8),
        Err(e) => {
            eprintln!("strata: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parse the command line, every boolean flag in docker's `--flag[=true|false]` form.
fn parse(cmd: clap::Command, argv: Vec<OsString>) -> Cli {
    let template = groups::help_template(&cmd);
    let matches =
        bool_flags::docker_bools_for(cmd.help_template(template), &argv).get_matches_from(argv);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
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

/// Print a formatted listing; a reader that went away (`| head`) ends it quietly.
pub fn print_out(out: format::Output) -> strata_runtime::Result<()> {
    quiet_pipe(out.print())
}

/// Print `text` and a newline; a closed pipe ends it quietly.
pub fn print_text(text: &str) -> strata_runtime::Result<()> {
    let mut o = std::io::stdout().lock();
    quiet_pipe(writeln!(o, "{text}").and_then(|()| o.flush()))
}

fn quiet_pipe(r: std::io::Result<()>) -> strata_runtime::Result<()> {
    r.map_err(|e| output::exit_on_write_error(&e))
}
