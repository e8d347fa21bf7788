//! docker's other container commands: `restart`, `wait`, `cp`, `top`, `stats`, `rename`,
//! `pause`, `unpause`, `port`.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Subcommand;
use strata_runtime::container::cp::{self, CpOptions, HostEnd};
use strata_runtime::container::{self, pause, stats, Status};
use strata_runtime::err;
use strata_runtime::isolation::rootless;
use strata_runtime::store::Store;

use crate::format::Output;

type R = strata_runtime::Result<()>;

/// The container commands docker has beside run/ps/logs/stop/start/kill/rm/exec.
#[derive(Subcommand, Debug)]
pub enum MoreCmd {
    /// Restart containers: stop (SIGTERM, SIGKILL after the timeout), then start detached.
    Restart {
        /// Seconds to wait before SIGKILL (default: the container's --stop-timeout, else 10).
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Block until containers stop, then print their exit codes.
    Wait {
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Copy files between a container and the host: `cp CTR:SRC DEST`, `cp SRC CTR:DEST`,
    /// `-` for a tar stream on stdin/stdout.
    Cp {
        /// Archive mode: keep owners (uid/gid).
        #[arg(short, long)]
        archive: bool,
        /// Follow a symlink named as SRC.
        #[arg(short = 'L', long)]
        follow_link: bool,
        /// Quiet (accepted for docker's scripts; strata prints no progress).
        #[arg(short, long)]
        quiet: bool,
        /// Source: CONTAINER:PATH, a host path, or -.
        src: String,
        /// Destination: CONTAINER:PATH, a host path, or -.
        dest: String,
    },
    /// Show the processes of a running container.
    Top {
        /// Container.
        container: String,
        /// ps options (accepted for docker's scripts; strata prints its fixed columns).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Live resource use of containers (all running ones when none is named).
    Stats {
        /// Show all containers (default: running only).
        #[arg(short, long)]
        all: bool,
        /// Print one reading and exit.
        #[arg(long)]
        no_stream: bool,
        /// Do not truncate ids.
        #[arg(long)]
        no_trunc: bool,
        /// Go template (fields: Container, ID, Name, CPUPerc, MemUsage, MemPerc, NetIO,
        /// BlockIO, PIDs), `table TEMPLATE`, or `json`.
        #[arg(long)]
        format: Option<String>,
        /// Containers.
        containers: Vec<String>,
    },
    /// Rename a container.
    Rename {
        /// Container.
        container: String,
        /// New name.
        new_name: String,
    },
    /// Freeze every process of containers (cgroup freezer).
    Pause {
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Thaw paused containers.
    Unpause {
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Attach the terminal to a detached container's stdin, stdout and stderr (detach with
    /// Ctrl-P Ctrl-Q).
    Attach {
        /// Keys that detach, leaving the container running (docker's format: ctrl-p,ctrl-q).
        #[arg(long, value_name = "KEYS")]
        detach_keys: Option<String>,
        /// Do not send stdin to the container.
        #[arg(long)]
        no_stdin: bool,
        /// Forward signals (SIGINT, SIGTERM ...) to the container's command; off with =false.
        #[arg(long, value_name = "true|false", default_value = "true", num_args = 0..=1,
              action = clap::ArgAction::Set,
              require_equals = true, default_missing_value = "true",
              value_parser = clap::builder::BoolishValueParser::new())]
        sig_proxy: bool,
        /// Container.
        container: String,
    },
    /// List a container's published ports (or the mapping of one PORT[/PROTO]).
    Port {
        /// Container.
        container: String,
        /// PRIVATE_PORT[/PROTO].
        port: Option<String>,
    },
}

/// Run one of these commands.
pub fn run(store: &Store, cmd: MoreCmd) -> R {
    match cmd {
        MoreCmd::Restart { time, containers } => {
            for c in containers {
                let id = container::resolve(store, &c)?;
                pause::thaw_if_paused(&id);
                container::stop(store, &id, time.map(Duration::from_secs))?;
                if rootless::needed() {
                    rootless::enter_new()?;
                }
                container::start(store, &id, false)?;
                crate::containers::events(store, "restart", &id);
                outln!("{c}");
            }
            Ok(())
        }
        MoreCmd::Wait { containers } => {
            let ids = containers
                .iter()
                .map(|c| container::resolve(store, c))
                .collect::<strata_runtime::Result<Vec<_>>>()?;
            for id in ids {
                let code = strata_runtime::container::wait::wait(store, &id)?;
                outln!("{code}");
            }
            Ok(())
        }
        MoreCmd::Cp {
            archive,
            follow_link,
            quiet: _,
            src,
            dest,
        } => copy(
            store,
            &src,
            &dest,
            CpOptions {
                archive,
                follow: follow_link,
            },
        ),
        MoreCmd::Top { container: c, .. } => {
            let id = container::resolve(store, &c)?;
            let procs = strata_runtime::container::top::top(store, &id)?;
            let mut out = Output::new(
                None,
                "table {{.UID}}\t{{.PID}}\t{{.PPID}}\t{{.TIME}}\t{{.CMD}}",
                &[],
            )
            .map_err(strata_runtime::Error)?;
            for p in procs {
                let t = p.cpu_secs;
                out.row(&serde_json::json!({
                    "UID": p.uid.to_string(), "PID": p.pid.to_string(), "PPID": p.ppid.to_string(),
                    "TIME": format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60), "CMD": p.cmd,
                }))
                .map_err(strata_runtime::Error)?;
            }
            crate::print_out(out)
        }
        MoreCmd::Stats {
            all,
            no_stream,
            no_trunc,
            format,
            containers,
        } => stats_loop(
            store,
            all,
            no_stream,
            no_trunc,
            format.as_deref(),
            &containers,
        ),
        MoreCmd::Rename {
            container: c,
            new_name,
        } => {
            let id = container::resolve(store, &c)?;
            strata_runtime::container::rename::rename(store, &id, &new_name)?;
            crate::containers::events(store, "rename", &id);
            Ok(())
        }
        MoreCmd::Pause { containers } => each(store, &containers, "pause", pause::pause),
        MoreCmd::Unpause { containers } => each(store, &containers, "unpause", pause::unpause),
        MoreCmd::Attach {
            detach_keys,
            no_stdin,
            sig_proxy,
            container: c,
        } => {
            use strata_runtime::container::attach;
            let id = container::resolve(store, &c)?;
            let o = attach::AttachOptions {
                detach_keys: match detach_keys {
                    Some(k) => attach::parse_detach_keys(&k)?,
                    None => attach::DEFAULT_DETACH_KEYS.to_vec(),
                },
                stdin: !no_stdin,
                sig_proxy,
            };
            match attach::attach(store, &id, &o)? {
                Some(code) => crate::containers::exit_with(code),
                None => Ok(()),
            }
        }
        MoreCmd::Port { container: c, port } => {
            if let Some(p) = &port {
                parse_port(p)?;
            }
            crate::network_cmd::port(store, &c, port)
        }
    }
}

fn each(store: &Store, names: &[String], event: &str, f: fn(&Store, &str) -> R) -> R {
    for c in names {
        let id = container::resolve(store, c)?;
        f(store, &id)?;
        crate::containers::events(store, event, &id);
        outln!("{c}");
    }
    Ok(())
}

/// docker's `port` argument: `80`, `80/tcp`, `53/udp`, `132/sctp`.
fn parse_port(p: &str) -> R {
    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    if num.parse::<u16>().is_err() || !["tcp", "udp", "sctp"].contains(&proto) {
        return Err(err!("invalid port {p:?}: use PORT[/tcp|udp|sctp]"));
    }
    Ok(())
}

/// Split `CONTAINER:PATH` (a host path with a `/` before any `:` is a host path, as docker
/// reads it).
fn container_part(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    let (c, p) = s.split_once(':')?;
    (!c.is_empty() && !c.contains('/')).then_some((c, p))
}

fn copy(store: &Store, src: &str, dest: &str, o: CpOptions) -> R {
    match (container_part(src), container_part(dest)) {
        (Some(_), Some(_)) => Err(err!(
            "copying between containers is not supported: copy to the host first"
        )),
        (None, None) => Err(err!("one of source and destination must be CONTAINER:PATH")),
        (Some((c, p)), None) => {
            let id = container::resolve(store, c)?;
            if rootless::needed() {
                container::enter_for_container(store, &id)?;
            }
            if dest == "-" {
                let mut out = std::io::stdout().lock();
                cp::copy_out(store, &id, p, HostEnd::Tar(&mut out), o)?;
                out.flush().map_err(|e| err!("cannot write the tar: {e}"))
            } else {
                cp::copy_out(store, &id, p, HostEnd::Path(PathBuf::from(dest)), o)
            }
        }
        (None, Some((c, p))) => {
            let id = container::resolve(store, c)?;
            if rootless::needed() {
                container::enter_for_container(store, &id)?;
            }
            if src == "-" {
                let mut input = std::io::stdin().lock();
                cp::copy_in(store, &id, p, HostEnd::TarIn(&mut input), o)
            } else {
                cp::copy_in(store, &id, p, HostEnd::Path(PathBuf::from(src)), o)
            }
        }
    }
}

fn stats_loop(
    store: &Store,
    all: bool,
    no_stream: bool,
    no_trunc: bool,
    format: Option<&str>,
    names: &[String],
) -> R {
    let mut ids = Vec::new();
    for n in names {
        if n.starts_with('/') && std::path::Path::new(n).is_dir() {
            return Err(err!(
                "strata stats shows containers, as docker's: the counters of the union mounted at {n} are `strata fs stats {n}`"
            ));
        }
        ids.push(container::resolve(store, n)?);
    }
    let interval = Duration::from_millis(1000);
    let mut prev: Option<(Instant, Vec<(String, stats::Sample)>)> = None;
    loop {
        let list: Vec<String> = if names.is_empty() {
            container::list_readable(store)?
                .into_iter()
                .filter(|c| {
                    all || container::reconcile(store, &c.id)
                        .is_ok_and(|s| s.status == Status::Running)
                })
                .map(|c| c.id)
                .collect()
        } else {
            ids.clone()
        };
        let now = Instant::now();
        let samples: Vec<(String, stats::Sample)> = list
            .iter()
            .map(|id| (id.clone(), stats::sample(id)))
            .collect();
        if let Some((t0, before)) = &prev {
            let secs = now.duration_since(*t0).as_secs_f64();
            let mut out = Output::new(
                format,
                "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}",
                &[
                    ("ID", "CONTAINER ID"),
                    ("Container", "CONTAINER"),
                    ("CPUPerc", "CPU %"),
                    ("MemUsage", "MEM USAGE / LIMIT"),
                    ("MemPerc", "MEM %"),
                    ("NetIO", "NET I/O"),
                    ("BlockIO", "BLOCK I/O"),
                ],
            )
            .map_err(strata_runtime::Error)?;
            if !no_stream {
                // docker redraws the table in place.
                crate::output::write_or_exit(format_args!("\x1b[2J\x1b[H"));
            }
            for (id, s) in &samples {
                let b = before.iter().find(|(i, _)| i == id).map(|(_, s)| s.clone());
                let cpu = b.map(|b| stats::cpu_percent(&b, s, secs)).unwrap_or(0.0);
                let name = container::load_config(store, id)
                    .map(|c| c.name)
                    .unwrap_or_default();
                let short: String = if no_trunc {
                    id.clone()
                } else {
                    id.chars().take(12).collect()
                };
                let mem_pct = if s.mem_limit > 0 {
                    s.mem as f64 / s.mem_limit as f64 * 100.0
                } else {
                    0.0
                };
                out.row(&serde_json::json!({
                    "Container": short, "ID": short, "Name": name,
                    "CPUPerc": format!("{cpu:.2}%"),
                    "MemUsage": format!("{} / {}", bin_size(s.mem), bin_size(s.mem_limit)),
                    "MemPerc": format!("{mem_pct:.2}%"),
                    "NetIO": "0B / 0B", "BlockIO": "0B / 0B",
                    "PIDs": s.pids.to_string(),
                }))
                .map_err(strata_runtime::Error)?;
            }
            crate::print_out(out)?;
            if no_stream {
                return Ok(());
            }
        }
        prev = Some((now, samples));
        std::thread::sleep(interval);
    }
}

/// docker prints memory in binary units (MiB, GiB).
fn bin_size(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.2}{}", units[i])
    }
}
