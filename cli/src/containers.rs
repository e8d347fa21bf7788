//! Container subcommands (docker-like): `run`, `ps`, `logs`, `stop`, `start`, `kill`, `rm`,
//! `exec`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use strata_runtime::container::exec::ExecOptions;
use strata_runtime::container::follow as log_follow;
use strata_runtime::container::{self, Status};
use strata_runtime::isolation::rootless;
use strata_runtime::store::Store;

mod run_options;
use run_options::run_options;

type R = strata_runtime::Result<()>;

/// The container subcommands.
#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Create and run a container.
    // Boxed: the run options are large and this sits in the top-level command enum.
    Run(Box<RunArgs>),
    /// Create a container without starting it (run's options; `start` runs it).
    Create(Box<RunArgs>),
    /// List containers (running only, unless -a).
    Ps(PsArgs),
    /// Print a container's output (stdout to stdout, stderr to stderr).
    Logs {
        /// Keep printing as the container writes.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines (or all).
        #[arg(short = 'n', long, value_name = "N")]
        tail: Option<String>,
        /// Prefix each line with its time (RFC 3339, nanoseconds).
        #[arg(short, long)]
        timestamps: bool,
        /// Only lines since a time: RFC 3339, a unix time, or a duration back (10m).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only lines until a time (same forms); -f stops there.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Container.
        container: String,
    },
    /// Stop containers: the stop signal (SIGTERM), then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before SIGKILL (default: the container's --stop-timeout, else 10).
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Start stopped containers (detached unless -a).
    Start {
        /// Attach: run in the foreground and return its exit status.
        #[arg(short, long)]
        attach: bool,
        /// Attach stdin too (implies -a; the container was created with -i).
        #[arg(short, long)]
        interactive: bool,
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
        /// Remove their anonymous volumes too.
        #[arg(short, long)]
        volumes: bool,
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
    /// Filter: name=, status=, label=KEY[=VALUE], id=, ancestor=, exited=CODE.
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Show the N most recently created containers (any state).
    #[arg(short = 'n', long = "last", value_name = "N")]
    pub last: Option<usize>,
    /// Show the most recently created container (any state).
    #[arg(short = 'l', long)]
    pub latest: bool,
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
    /// Bind mount /HOST:DST[:ro], named volume NAME:DST[:ro], or anonymous volume DST.
    #[arg(short, long = "volume")]
    volume: Vec<String>,
    /// Mount: type=bind|volume|tmpfs,src=..,dst=..[,readonly][,tmpfs-size=..].
    #[arg(long = "mount", value_name = "SPEC")]
    mount: Vec<String>,
    /// Mount a tmpfs at PATH (PATH[:size=64m,mode=1777,...]).
    #[arg(long, value_name = "PATH[:OPTS]")]
    tmpfs: Vec<String>,
    /// Read environment variables from FILE (KEY=VALUE lines).
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Replace the image's entrypoint ("" clears it).
    #[arg(long, value_name = "CMD")]
    entrypoint: Option<String>,
    /// Label KEY=VALUE.
    #[arg(short = 'l', long = "label")]
    label: Vec<String>,
    /// Restart policy: no, on-failure[:N], always, unless-stopped.
    #[arg(long, value_name = "POLICY")]
    restart: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Resource limit NAME=SOFT[:HARD] (nofile=1024:2048).
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    ulimit: Vec<String>,
    /// CPUs the container may use (0-1, 0,2).
    #[arg(long, value_name = "CPUS")]
    cpuset_cpus: Option<String>,
    /// Memory nodes the container may use (0).
    #[arg(long, value_name = "NODES")]
    cpuset_mems: Option<String>,
    /// Run strata's init as PID 1 (it reaps zombies and forwards signals).
    #[arg(long)]
    init: bool,
    /// The signal `stop` sends first (default TERM).
    #[arg(long, value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[arg(long, value_name = "SECONDS")]
    stop_timeout: Option<u64>,
    /// Extra group for the process (name or number).
    #[arg(long, value_name = "GROUP")]
    group_add: Vec<String>,
    /// Add NAME:IP to /etc/hosts.
    #[arg(long, value_name = "NAME:IP")]
    add_host: Vec<String>,
    /// DNS server for /etc/resolv.conf.
    #[arg(long, value_name = "IP")]
    dns: Vec<String>,
    /// Pull the image: missing (default: when not in the store and the name has a registry
    /// host), always, or never.
    #[arg(long, value_name = "POLICY", default_value = "missing")]
    pull: String,
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
    #[command(flatten)]
    security: SecurityArgs,
    /// Image.
    image: String,
    /// Command and arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

/// docker's security flags of `run`.
#[derive(Args, Debug)]
pub struct SecurityArgs {
    /// Add a capability (NET_ADMIN, CAP_SYS_PTRACE, ALL).
    #[arg(long, value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a capability (CHOWN, ALL).
    #[arg(long, value_name = "CAP")]
    cap_drop: Vec<String>,
    /// seccomp=PROFILE.json|unconfined, no-new-privileges[=true], label=disable,
    /// apparmor=unconfined.
    #[arg(long, value_name = "OPT")]
    security_opt: Vec<String>,
    /// Every capability, no seccomp filter, the host's devices, /sys writable.
    #[arg(long)]
    privileged: bool,
    /// Give a host device: HOST[:CONTAINER[:PERMS]], PERMS of rwm.
    #[arg(long, value_name = "DEVICE")]
    device: Vec<String>,
}

impl SecurityArgs {
    fn options(self) -> strata_runtime::isolation::security::SecurityOptions {
        strata_runtime::isolation::security::SecurityOptions {
            cap_add: self.cap_add,
            cap_drop: self.cap_drop,
            security_opt: self.security_opt,
            privileged: self.privileged,
            devices: self.device,
        }
    }
}

/// Arguments of `strata exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Run the command in the background.
    #[arg(short, long)]
    detach: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// Environment variable KEY=VALUE.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines; -e wins).
    #[arg(long, value_name = "FILE")]
    env_file: Vec<std::path::PathBuf>,
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
            ContainerCmd::Run(_)
                | ContainerCmd::Create(_)
                | ContainerCmd::Start { .. }
                | ContainerCmd::Rm { .. }
        )
    {
        rootless::enter_new()?;
    }
    match cmd {
        ContainerCmd::Run(a) => run_container(store, *a),
        ContainerCmd::Create(a) => {
            pull_for_run(store, &a.image, &a.pull)?;
            let cfg = container::create(store, &run_options(*a)?)?;
            outln!("{}", cfg.id);
            Ok(())
        }
        ContainerCmd::Ps(a) => ps(store, &a),
        ContainerCmd::Logs {
            follow,
            tail,
            timestamps,
            since,
            until,
            container: c,
        } => {
            let id = container::resolve(store, &c)?;
            let now = strata_runtime::util::now_secs();
            let o = log_follow::LogOptions {
                follow,
                tail: tail
                    .as_deref()
                    .map(log_follow::parse_tail)
                    .transpose()?
                    .flatten(),
                timestamps,
                since: since
                    .as_deref()
                    .map(|s| log_follow::parse_since(s, now))
                    .transpose()?,
                until: until
                    .as_deref()
                    .map(|s| {
                        log_follow::parse_since(s, now).map_err(|_| {
                            strata_runtime::err!("invalid --until {s:?}: use an RFC 3339 time, a unix time or a duration like 10m")
                        })
                    })
                    .transpose()?,
            };
            log_follow::copy_log(
                store,
                &id,
                &o,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
        }
        ContainerCmd::Stop { time, containers } => {
            for c in containers {
                let id = container::resolve(store, &c)?;
                strata_runtime::container::pause::thaw_if_paused(&id);
                container::stop(store, &id, time.map(Duration::from_secs))
                    .map_err(|e| as_typed(e, &id, &c))?;
                events(store, "stop", &id);
                outln!("{c}");
            }
            Ok(())
        }
        ContainerCmd::Start {
            attach,
            interactive,
            containers,
        } => {
            for c in containers {
                let id = container::resolve(store, &c)?;
                if let Some(code) = container::start(store, &id, attach || interactive)
                    .map_err(|e| as_typed(e, &id, &c))?
                {
                    exit_with(code);
                }
                outln!("{c}");
            }
            Ok(())
        }
        ContainerCmd::Kill { signal, containers } => {
            let sig = container::parse_signal(&signal)?;
            for c in containers {
                let id = container::resolve(store, &c)?;
                container::kill_container(store, &id, sig).map_err(|e| as_typed(e, &id, &c))?;
                if sig == nix::sys::signal::Signal::SIGKILL {
                    strata_runtime::container::pause::thaw_if_paused(&id);
                }
                events(store, "kill", &id);
                outln!("{c}");
            }
            Ok(())
        }
        ContainerCmd::Rm {
            force,
            volumes,
            containers,
        } => {
            for c in containers {
                let id = container::resolve(store, &c)?;
                if force {
                    strata_runtime::container::pause::thaw_if_paused(&id);
                }
                container::remove_with_volumes(store, &id, force, volumes)
                    .map_err(|e| as_typed(e, &id, &c))?;
                outln!("{c}");
            }
            Ok(())
        }
        ContainerCmd::Exec(a) => {
            let id = container::resolve(store, &a.container)?;
            let mut env = Vec::new();
            for f in &a.env_file {
                env.extend(strata_runtime::container::options::read_env_file(f)?);
            }
            env.extend(a.env);
            let o = ExecOptions {
                interactive: a.interactive,
                tty: a.tty,
                env,
                user: a.user,
                workdir: a.workdir,
                cmd: a.cmd,
                detach: a.detach,
            };
            let code = strata_runtime::container::exec::exec(store, &id, &o)
                .map_err(|e| as_typed(e, &id, &a.container))?;
            exit_with(code)
        }
    }
}

/// An error about container `id` quoting it as the user typed it (a name, a short id)
/// rather than as the 64-hex id the library resolved it to.
fn as_typed(e: strata_runtime::Error, id: &str, typed: &str) -> strata_runtime::Error {
    strata_runtime::Error(e.0.replace(id, typed))
}

/// Flush what was printed, then exit with the container's status.
pub(crate) fn exit_with(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// `run --pull`: always, missing (default), never.
fn pull_for_run(store: &Store, image: &str, policy: &str) -> R {
    let local = || strata_runtime::image::resolve(store, image).is_ok();
    let pull = match policy {
        "always" => true,
        "missing" => !local() && strata_runtime::transfer::pull::names_registry(image),
        "never" => false,
        other => {
            return Err(strata_runtime::Error(format!(
                "invalid --pull {other:?}: use missing, never or always"
            )))
        }
    };
    if pull {
        let o = strata_runtime::transfer::registry::Options {
            creds: None,
            insecure: false,
            quiet: true,
            timeout: None,
        };
        eprintln!("strata: pulling {image}");
        // Lazily: an eStargz image starts before its layers are downloaded.
        strata_runtime::transfer::pull::pull_opts(store, image, &o, true)?;
    }
    Ok(())
}

fn run_container(store: &Store, a: RunArgs) -> R {
    pull_for_run(store, &a.image, &a.pull)?;
    match container::run(store, &run_options(a)?)? {
        (id, None) => {
            outln!("{id}");
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

/// Print one line to stdout; an error once the reader has left (a closed pipe).
pub fn print_line(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
}

/// `strata ps`: docker's table, `-q`, or `--format`; `--filter`, `-n`, `-l`.
pub fn ps(store: &Store, a: &PsArgs) -> R {
    use crate::docker_json::{ps_row, PS_HEADERS, PS_TABLE};
    let last = if a.latest { Some(1) } else { a.last };
    let filters = crate::ps_filter::Filters::parse(&a.filter)?;
    let all = a.all || last.is_some();
    let fmt = if a.quiet && a.format.is_none() {
        Some("{{.ID}}")
    } else {
        a.format.as_deref()
    };
    let mut out =
        crate::format::Output::new(fmt, PS_TABLE, PS_HEADERS).map_err(strata_runtime::Error)?;
    let mut listed = container::list_readable(store)?;
    // Newest first, to the nanosecond (config.json's time) within one second, for -n/-l.
    let written = |c: &container::ContainerConfig| {
        std::fs::metadata(container::Paths::new(store, &c.id).config())
            .and_then(|m| m.modified())
            .ok()
    };
    listed.sort_by_cached_key(|c| std::cmp::Reverse((c.created, written(c))));
    if let Some(n) = last {
        listed.truncate(n);
    }
    for c in listed {
        let st = match container::reconcile(store, &c.id) {
            Ok(st) => st,
            Err(e) => {
                eprintln!("strata: warning: skipping container {}: {e}", c.name);
                continue;
            }
        };
        if !all && st.status != Status::Running && !filters.has_status() {
            continue;
        }
        if !filters.matches(store, &c, &st) {
            continue;
        }
        out.row(&ps_row(&c, &st, a.no_trunc))
            .map_err(strata_runtime::Error)?;
    }
    crate::print_out(out)
}
