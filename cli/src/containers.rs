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
use strata_runtime::util::ago;

type R = strata_runtime::Result<()>;

/// The container subcommands.
#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Create and run a container.
    // Boxed: the run options are large and this sits in the top-level command enum.
    Run(Box<RunArgs>),
    /// List containers (running only, unless -a).
    Ps {
        /// Show all containers.
        #[arg(short, long)]
        all: bool,
        /// Print ids only.
        #[arg(short, long)]
        quiet: bool,
    },
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
    // -- networking (issue 17) --
    /// Network: bridge (the default network), a user network's NAME, host (share the
    /// host's), none (only loopback) or container:NAME (share another container's).
    #[arg(long = "network", alias = "net", default_value = "bridge")]
    net: String,
    /// Publish a port: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp] (no host port: a free one).
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish every port the image exposes, each on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// The container's address on its network.
    #[arg(long)]
    ip: Option<String>,
    // -- end networking --
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
        ContainerCmd::Ps { all, quiet } => ps(store, all, quiet),
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
                run::stop(store, &id, Duration::from_secs(time))?;
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
                println!("{c}");
            }
            Ok(())
        }
        ContainerCmd::Rm { force, containers } => {
            for c in containers {
                let id = container::resolve(store, &c)?;
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
        publish: a.publish,
        publish_all: a.publish_all,
        ip: a.ip,
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

fn status_text(st: &container::State) -> String {
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}",
            ago(st.started_at.unwrap_or(0)).trim_end_matches(" ago")
        ),
        Status::Exited => format!(
            "Exited ({}) {}",
            st.exit_code.unwrap_or(0),
            ago(st.finished_at.unwrap_or(0))
        ),
    }
}

fn ps(store: &Store, all: bool, quiet: bool) -> R {
    if !quiet {
        println!(
            "{:<14} {:<20} {:<24} {:<16} {:<22} {:<24} NAMES",
            "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS"
        );
    }
    for c in container::list_readable(store)? {
        let st = match run::reconcile(store, &c.id) {
            Ok(st) => st,
            Err(e) => {
                eprintln!("strata: warning: skipping container {}: {e}", c.name);
                continue;
            }
        };
        if !all && st.status != Status::Running {
            continue;
        }
        if quiet {
            println!("{}", &c.id[..12]);
            continue;
        }
        let cmd: String = format!("\"{}\"", c.process.args.join(" "))
            .chars()
            .take(22)
            .collect();
        // As docker's: a stopped container publishes nothing.
        let running = st.status == Status::Running;
        let ports = c
            .ports
            .iter()
            .filter(|_| running)
            .map(strata_runtime::network::ports::text)
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{:<14} {:<20} {:<24} {:<16} {:<22} {:<24} {}",
            &c.id[..12],
            c.image,
            cmd,
            ago(c.created),
            status_text(&st),
            ports,
            c.name
        );
    }
    Ok(())
}

/// `strata inspect` of a container: its config, reconciled state and paths, docker's shape.
pub fn inspect_container(store: &Store, id: &str) -> strata_runtime::Result<serde_json::Value> {
    let cfg = container::load_config(store, id)?;
    let st = run::reconcile(store, id)?;
    let paths = container::Paths::new(store, id);
    Ok(serde_json::json!({
        "Id": cfg.id,
        "Name": cfg.name,
        "Image": cfg.image_id,
        "ImageName": cfg.image,
        "Created": strata_runtime::util::rfc3339(cfg.created),
        "State": st,
        "Config": cfg,
        "GraphDriver": {
            "Name": cfg.driver,
            "Reason": cfg.driver_reason,
            "Data": {
                "UpperDir": paths.upper(),
                "WorkDir": paths.work(),
                "MergedDir": paths.merged(),
                "LowerDirs": cfg.layers.iter().rev().map(|h| store.layer_dir(h)).collect::<Vec<_>>(),
            }
        },
        "LogPath": paths.log(),
    }))
}
