//! Container subcommands (docker-like): `run`, `ps`, `logs`, `stop`, `start`, `kill`, `rm`,
//! `exec`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use strata_runtime::container::follow as log_follow;
use strata_runtime::container::{self, Status};
use strata_runtime::exec::ExecOptions;
use strata_runtime::rootless;
use strata_runtime::run::{self, RunOptions};
use strata_runtime::store::Store;

type R = strata_runtime::Result<()>;

/// The container subcommands.
#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Create and run a container.
    // Boxed: the run options are large and this sits in the top-level command enum.
    Run(Box<RunArgs>),
    /// List containers (running only, unless -a).
    Ps(PsArgs),
    /// Print a detached container's output.
    Logs {
        /// Keep printing as the container writes.
        #[arg(short, long)]
        follow: bool,
        /// Container.
        container: String,
    },
    /// Stop containers: SIGTERM, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Start stopped containers (detached unless -a).
    Start {
        /// Attach: run in the foreground and return its exit status.
        #[arg(short, long)]
        attach: bool,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers (default KILL).
    Kill {
        /// Signal name or number.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill running containers first.
        #[arg(short, long)]
        force: bool,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Run a command in a running container.
    Exec(ExecArgs),
}

/// Arguments of `strata ps` (and `container ls`).
#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers.
    #[arg(short, long)]
    pub all: bool,
    /// Print ids only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Go template (fields: ID, Image, Command, CreatedAt, RunningFor, Ports, State, Status,
    /// Size, Names, Labels, Mounts, Networks), `table TEMPLATE`, or `json`.
    #[arg(long)]
    pub format: Option<String>,
}

/// Arguments of `strata run`.
#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Container name.
    #[arg(long)]
    name: Option<String>,
    /// Run in the background and print the container id.
    #[arg(short, long)]
    detach: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// Environment variable KEY=VALUE (or KEY to copy it from here).
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// USER[:GROUP], names or numbers.
    #[arg(short, long)]
    user: Option<String>,
    /// Hostname.
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Bind mount SRC:DST[:ro].
    #[arg(short, long = "volume")]
    volume: Vec<String>,
    /// Network: host (share the host's) or none (only loopback).
    #[arg(long = "net", alias = "network", default_value = "host")]
    net: String,
    /// Storage driver: fuse, overlay or auto.
    #[arg(long, default_value = "auto")]
    driver: String,
    /// Memory limit (64m, 1g).
    #[arg(short, long)]
    memory: Option<String>,
    /// Maximum number of processes.
    #[arg(long)]
    pids_limit: Option<i64>,
    /// CPU quota in CPUs (0.5).
    #[arg(long)]
    cpus: Option<f64>,
    /// Write one JSON line per filesystem request on the container's root to FILE (strata's
    /// FUSE union only: auto picks it, overlay is refused); see docs/tracing.md.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Trace only these ops, comma-separated (read,write,lookup,...).
    #[arg(long, value_name = "OPS", requires = "trace")]
    trace_ops: Option<String>,
    /// Trace only paths matching GLOB (*, ? within a component, ** across directories).
    #[arg(long, value_name = "GLOB", requires = "trace")]
    trace_path: Option<String>,
    /// Image.
    image: String,
    /// Command and arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

/// Arguments of `strata exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// Environment variable KEY=VALUE.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// USER[:GROUP].
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Container.
    container: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    cmd: Vec<String>,
}

/// Run one container subcommand. Commands that run a container exit the process with the
/// container's status.
pub fn run(store: &Store, cmd: ContainerCmd) -> R {
    // Rootless: mounting and running, and removing files owned by subordinate ids, work
    // inside a user namespace where the caller is root.
    if rootless::needed()
        && matches!(
            cmd,
            ContainerCmd::Run(_) | ContainerCmd::Start { .. } | ContainerCmd::Rm { .. }
        )
    {
        rootless::enter_new()?;
    }
    match cmd {
        ContainerCmd::Run(a) => run_container(store, *a),
        ContainerCmd::Ps(a) => ps(store, &a),
        ContainerCmd::Logs {
            follow,
            container: c,
        } => {
            let id = container::resolve(store, &c)?;
            log_follow::copy_log(store, &id, follow, &mut std::io::stdout())
        }
        ContainerCmd::Stop { time, containers } => {
            for c in containers {
                let id = container::resolve(store, &c)?;
                strata_runtime::container::pause::thaw_if_paused(&id);
                run::stop(store, &id, Duration::from_secs(time))?;
                events(store, "stop", &id);
                println!("{c}");
            }
            Ok(())
        }
        ContainerCmd::Start { attach, containers } => {
            for c in containers {
                let id = container::resolve(store, &c)?;
                if let Some(code) = run::start(store, &id, attach)? {
                    exit_with(code);
                }
                println!("{c}");
            }
            Ok(())
        }
        ContainerCmd::Kill { signal, containers } => {
            let sig = run::parse_signal(&signal)?;
            for c in containers {
                let id = container::resolve(store, &c)?;
                run::kill_container(store, &id, sig)?;
                if sig == nix::sys::signal::Signal::SIGKILL {
                    strata_runtime::container::pause::thaw_if_paused(&id);
                }
                events(store, "kill", &id);
                println!("{c}");
            }
            Ok(())
        }
        ContainerCmd::Rm { force, containers } => {
            for c in containers {
                let id = container::resolve(store, &c)?;
                if force {
                    strata_runtime::container::pause::thaw_if_paused(&id);
                }
                run::remove(store, &id, force)?;
                println!("{c}");
            }
            Ok(())
        }
        ContainerCmd::Exec(a) => {
            let id = container::resolve(store, &a.container)?;
            let o = ExecOptions {
                interactive: a.interactive,
                tty: a.tty,
                env: a.env,
                user: a.user,
                workdir: a.workdir,
                cmd: a.cmd,
            };
            let code = strata_runtime::exec::exec(store, &id, &o)?;
            exit_with(code)
        }
    }
}

/// Flush what was printed, then exit with the container's status.
fn exit_with(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

fn run_container(store: &Store, a: RunArgs) -> R {
    if let Some(ops) = &a.trace_ops {
        strata_fs::trace::parse_ops(ops).map_err(strata_runtime::Error)?;
    }
    let o = RunOptions {
        name: a.name,
        auto_remove: a.rm,
        detach: a.detach,
        interactive: a.interactive,
        tty: a.tty,
        env: a.env,
        workdir: a.workdir,
        user: a.user,
        hostname: a.hostname,
        volumes: a.volume,
        network: a.net,
        driver: a.driver,
        memory: a.memory,
        pids_limit: a.pids_limit,
        cpus: a.cpus,
        trace: a.trace,
        trace_ops: a.trace_ops,
        trace_path: a.trace_path,
        image: a.image,
        cmd: a.cmd,
    };
    match run::run(store, &o)? {
        (id, None) => {
            println!("{id}");
            Ok(())
        }
        (_, Some(code)) => exit_with(code),
    }
}

/// Record a lifecycle event the runtime itself does not see (stop, kill, ...).
pub fn events(store: &Store, action: &str, id: &str) {
    if let Ok(cfg) = container::load_config(store, id) {
        strata_runtime::container::events::record(store, action, &cfg, &[]);
    }
}

/// `strata ps`: docker's table, `-q`, or `--format`.
pub fn ps(store: &Store, a: &PsArgs) -> R {
    use crate::docker_json::{ps_row, PS_HEADERS, PS_TABLE};
    let fmt = if a.quiet && a.format.is_none() {
        Some("{{.ID}}")
    } else {
        a.format.as_deref()
    };
    let mut out =
        crate::format::Output::new(fmt, PS_TABLE, PS_HEADERS).map_err(strata_runtime::Error)?;
    for c in container::list_readable(store)? {
        let st = match run::reconcile(store, &c.id) {
            Ok(st) => st,
            Err(e) => {
                eprintln!("strata: warning: skipping container {}: {e}", c.name);
                continue;
            }
        };
        if !a.all && st.status != Status::Running {
            continue;
        }
        out.row(&ps_row(&c, &st, a.no_trunc))
            .map_err(strata_runtime::Error)?;
    }
    crate::print_out(out)
}
