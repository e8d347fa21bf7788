//! Image store and container subcommands (docker-like), backed by strata-runtime.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches, Subcommand};
use strata_runtime::container::{self, Status};
use strata_runtime::exec::ExecOptions;
use strata_runtime::run::{self, RunOptions};
use strata_runtime::store::Store;
use strata_runtime::util::{ago, human_size};
use strata_runtime::{cgroups, commit, driver, image, images, rootless};

/// The docker-like subcommands, plus the global `--root DIR` they share.
#[derive(Debug)]
pub struct ContainerCommand {
    root: Option<PathBuf>,
    // Boxed: the run options are large and this sits in the top-level command enum.
    cmd: Box<Cmd>,
}

const ROOT_ARG: &str = "store_root";

// `--root` must be accepted before the subcommand (`strata --root DIR run ...`), so it is
// added to the top-level command as a global argument from here, where the commands live.
impl FromArgMatches for ContainerCommand {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Self::from_arg_matches_mut(&mut m.clone())
    }
    fn from_arg_matches_mut(m: &mut ArgMatches) -> Result<Self, clap::Error> {
        Ok(ContainerCommand {
            root: store_root(m),
            cmd: Box::new(Cmd::from_arg_matches_mut(m)?),
        })
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

/// The global `--root DIR` as given to any subcommand (`strata fsck` reads it too).
pub fn store_root(m: &ArgMatches) -> Option<PathBuf> {
    m.subcommand()
        .and_then(|(_, sm)| sm.try_get_one::<PathBuf>(ROOT_ARG).ok().flatten().cloned())
        .or_else(|| m.try_get_one::<PathBuf>(ROOT_ARG).ok().flatten().cloned())
}

fn root_arg() -> Arg {
    Arg::new(ROOT_ARG)
        .long("root")
        .value_name("DIR")
        .global(true)
        .value_parser(clap::value_parser!(PathBuf))
        .help("Store directory (default /var/lib/strata as root, $XDG_DATA_HOME/strata otherwise)")
}

impl Subcommand for ContainerCommand {
    fn augment_subcommands(cmd: Command) -> Command {
        Cmd::augment_subcommands(cmd.arg(root_arg()))
    }
    fn augment_subcommands_for_update(cmd: Command) -> Command {
        Cmd::augment_subcommands_for_update(cmd.arg(root_arg()))
    }
    fn has_subcommand(name: &str) -> bool {
        Cmd::has_subcommand(name)
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show the store location and the storage driver that would be used, with the reason.
    Info,
    /// Import a rootfs tarball (plain or gzip; - for stdin) as an image.
    Import(ImportArgs),
    /// List images.
    Images,
    /// Add a tag to an image.
    Tag {
        /// Existing image (name[:tag] or id).
        source: String,
        /// New name[:tag].
        target: String,
    },
    /// Remove images (or just a tag when the image has several).
    Rmi {
        /// Remove even if tagged several times or used by containers.
        #[arg(short, long)]
        force: bool,
        /// Images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show an image's or a container's metadata as JSON.
    Inspect {
        /// Images or containers.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show an image's layers and how they were made.
    History {
        /// Image.
        image: String,
    },
    /// Create and run a container.
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
    /// Load images from a docker-archive, an OCI archive or an OCI layout directory.
    Load(crate::transfer_cmd::LoadArgs),
    /// Save images as a docker-archive, an OCI archive or an OCI layout directory.
    Save(crate::transfer_cmd::SaveArgs),
    /// Pull an image from a registry (OCI distribution API); only missing layers are fetched.
    Pull(crate::transfer_cmd::PullArgs),
    /// Push an image to a registry; blobs the registry has are skipped or mounted.
    Push(crate::transfer_cmd::PushArgs),
    /// List a container's changes: A added, C changed, D deleted.
    Diff {
        /// Container.
        container: String,
    },
    /// Make a new image from a container's changes.
    Commit {
        /// Dockerfile instruction applied to the new image's config (CMD, ENV, ...).
        #[arg(short, long = "change")]
        change: Vec<String>,
        /// Commit message.
        #[arg(short, long)]
        message: Option<String>,
        /// Author.
        #[arg(short, long)]
        author: Option<String>,
        /// Container.
        container: String,
        /// NAME[:TAG] of the new image.
        image: Option<String>,
    },
    /// Write a container's filesystem as a tar (to stdout unless -o).
    Export {
        /// Output file.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Container.
        container: String,
    },
}

#[derive(Args, Debug)]
struct ImportArgs {
    /// Dockerfile instruction applied to the image config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, ...).
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Tarball path, or - for stdin.
    tarball: String,
    /// NAME[:TAG].
    name: String,
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
struct RunArgs {
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

#[derive(Args, Debug)]
struct ExecArgs {
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

/// Run one container or image subcommand. Commands that run a container exit the process
/// with the container's status.
pub fn run(cmd: ContainerCommand) -> Result<(), String> {
    let store = Store::open(cmd.root.as_deref()).map_err(|e| e.to_string())?;
    dispatch(&store, *cmd.cmd).map_err(|e| e.to_string())
}

type R = strata_runtime::Result<()>;

fn exit_with(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// Rootless: commands that mount, run containers or touch files owned by subordinate ids
/// work inside a user namespace where the caller is root.
fn enter_rootless(store: &Store, cmd: &Cmd) -> R {
    if !rootless::needed() {
        return Ok(());
    }
    match cmd {
        Cmd::Run(_)
        | Cmd::Start { .. }
        | Cmd::Import(_)
        | Cmd::Rm { .. }
        | Cmd::Rmi { .. }
        | Cmd::Info => rootless::enter_new(),
        Cmd::Diff { container: c }
        | Cmd::Commit { container: c, .. }
        | Cmd::Export { container: c, .. } => {
            let id = container::resolve(store, c)?;
            rootless::enter_for_container(store, &id)
        }
        _ => Ok(()),
    }
}

fn dispatch(store: &Store, cmd: Cmd) -> R {
    enter_rootless(store, &cmd)?;
    match cmd {
        Cmd::Load(a) => crate::transfer_cmd::load(store, a),
        Cmd::Save(a) => crate::transfer_cmd::save(store, a),
        Cmd::Pull(a) => crate::transfer_cmd::pull(store, a),
        Cmd::Push(a) => crate::transfer_cmd::push(store, a),
        Cmd::Info => info(store),
        Cmd::Import(a) => {
            let id = if a.tarball == "-" {
                images::import(store, std::io::stdin().lock(), &a.name, &a.change, "-")?
            } else {
                let f = std::fs::File::open(&a.tarball).map_err(|e| {
                    strata_runtime::Error(format!("cannot open {}: {e}", a.tarball))
                })?;
                images::import(store, f, &a.name, &a.change, &a.tarball)?
            };
            println!("{id}");
            Ok(())
        }
        Cmd::Images => {
            println!(
                "{:<30} {:<15} {:<14} {:<16} SIZE",
                "REPOSITORY", "TAG", "IMAGE ID", "CREATED"
            );
            for row in images::list(store)? {
                let (repo, tag) = match &row.reference {
                    Some(r) => (r.name.clone(), r.tag.clone()),
                    None => ("<none>".into(), "<none>".into()),
                };
                println!(
                    "{repo:<30} {tag:<15} {:<14} {:<16} {}",
                    image::short_id(&row.id),
                    ago(row.created),
                    human_size(row.size)
                );
            }
            Ok(())
        }
        Cmd::Tag { source, target } => images::tag(store, &source, &target),
        Cmd::Rmi {
            force,
            images: list,
        } => {
            for i in list {
                for line in images::rmi(store, &i, force)? {
                    println!("{line}");
                }
            }
            Ok(())
        }
        Cmd::Inspect { names } => {
            let mut out = Vec::new();
            for n in names {
                let v = match container::resolve(store, &n) {
                    Ok(id) => inspect_container(store, &id)?,
                    Err(cerr) => images::inspect(store, &n).map_err(|ierr| {
                        // A damaged item's own error says more than "no such".
                        let damaged = [&ierr, &cerr]
                            .into_iter()
                            .find(|e| e.0.contains("corrupt metadata"));
                        match damaged {
                            Some(e) => strata_runtime::Error(e.0.clone()),
                            None => {
                                strata_runtime::Error(format!("no such image or container: {n}"))
                            }
                        }
                    })?,
                };
                out.push(v);
            }
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            Ok(())
        }
        Cmd::History { image } => {
            println!(
                "{:<14} {:<16} {:<50} {:<10} COMMENT",
                "IMAGE", "CREATED", "CREATED BY", "SIZE"
            );
            for r in images::history(store, &image)? {
                let by: String = r.created_by.chars().take(50).collect();
                println!(
                    "{:<14} {:<16} {by:<50} {:<10} {}",
                    r.id,
                    ago(r.created),
                    human_size(r.size),
                    r.comment
                );
            }
            Ok(())
        }
        Cmd::Run(a) => {
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
        Cmd::Ps { all, quiet } => ps(store, all, quiet),
        Cmd::Logs {
            follow,
            container: c,
        } => logs(store, &c, follow),
        Cmd::Stop { time, containers } => {
            for c in containers {
                let id = container::resolve(store, &c)?;
                run::stop(store, &id, Duration::from_secs(time))?;
                println!("{c}");
            }
            Ok(())
        }
        Cmd::Start { attach, containers } => {
            for c in containers {
                let id = container::resolve(store, &c)?;
                if let Some(code) = run::start(store, &id, attach)? {
                    exit_with(code);
                }
                println!("{c}");
            }
            Ok(())
        }
        Cmd::Kill { signal, containers } => {
            let sig = run::parse_signal(&signal)?;
            for c in containers {
                let id = container::resolve(store, &c)?;
                run::kill_container(store, &id, sig)?;
                println!("{c}");
            }
            Ok(())
        }
        Cmd::Rm { force, containers } => {
            for c in containers {
                let id = container::resolve(store, &c)?;
                run::remove(store, &id, force)?;
                println!("{c}");
            }
            Ok(())
        }
        Cmd::Diff { container: c } => {
            let id = container::resolve(store, &c)?;
            let mut out = std::io::stdout().lock();
            for ch in commit::diff(store, &id)? {
                if writeln!(out, "{} {}", ch.kind.letter(), ch.path).is_err() {
                    break;
                }
            }
            Ok(())
        }
        Cmd::Commit {
            change,
            message,
            author,
            container: c,
            image,
        } => {
            let id = container::resolve(store, &c)?;
            let o = commit::CommitOptions {
                reference: image,
                changes: change,
                message,
                author,
            };
            println!("{}", commit::commit(store, &id, &o)?);
            Ok(())
        }
        Cmd::Export {
            output,
            container: c,
        } => {
            let id = container::resolve(store, &c)?;
            export(store, &id, output)
        }
        Cmd::Exec(a) => {
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

fn export(store: &Store, id: &str, output: Option<PathBuf>) -> R {
    let Some(path) = output else {
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            return Err(strata_runtime::Error(
                "refusing to write a tar to a terminal: redirect stdout or use -o FILE".into(),
            ));
        }
        let out = std::io::BufWriter::new(std::io::stdout().lock());
        return commit::export(store, id, out);
    };
    // A device or a pipe (/dev/null, /dev/stdout, a fifo) is written in place: a rename
    // would replace it with a regular file.
    if std::fs::metadata(&path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| strata_runtime::Error(format!("cannot open {}: {e}", path.display())))?;
        return commit::export(store, id, std::io::BufWriter::new(f));
    }
    // Written beside the target and renamed, so a failed export leaves no partial file.
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.strata-tmp{}", std::process::id()));
    let r = std::fs::File::create(&tmp)
        .map_err(|e| strata_runtime::Error(format!("cannot create {}: {e}", tmp.display())))
        .and_then(|f| commit::export(store, id, std::io::BufWriter::new(f)))
        .and_then(|()| {
            std::fs::rename(&tmp, &path)
                .map_err(|e| strata_runtime::Error(format!("cannot write {}: {e}", path.display())))
        });
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn info(store: &Store) -> R {
    let (drv, reason) = driver::choose(store, "auto", false)?;
    let cg = match cgroups::version() {
        cgroups::Version::V1 => "v1",
        cgroups::Version::V2 => "v2",
    };
    println!("Store: {}", store.root.display());
    println!("Storage driver: {}", drv.name());
    println!("Driver reason: {reason}");
    println!("Cgroup version: {cg}");
    println!("Rootless: {}", rootless::in_userns());
    println!(
        "Native layers: commits of fuse containers keep their upper as it is (deltas, metadata-only copies, redirects); \
         auto runs their images on the fuse driver, --driver overlay mounts a plain copy of each native layer, materialized once (layers/ID.plain)"
    );
    println!("Images: {}", image::list_image_ids(store)?.len());
    println!("Containers: {}", container::list_ids(store)?.len());
    Ok(())
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
            "{:<14} {:<20} {:<24} {:<16} {:<22} NAMES",
            "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS"
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
        println!(
            "{:<14} {:<20} {:<24} {:<16} {:<22} {}",
            &c.id[..12],
            c.image,
            cmd,
            ago(c.created),
            status_text(&st),
            c.name
        );
    }
    Ok(())
}

fn logs(store: &Store, c: &str, follow: bool) -> R {
    let id = container::resolve(store, c)?;
    let Some(mut f) = run::open_log(store, &id)? else {
        return Ok(());
    };
    let mut out = std::io::stdout();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| strata_runtime::Error(format!("cannot read the log: {e}")))?;
        if n > 0 {
            if out.write_all(&buf[..n]).is_err() {
                return Ok(());
            }
            continue;
        }
        let _ = out.flush();
        if !follow {
            return Ok(());
        }
        let st = container::load_state(store, &id)?;
        if st.status != Status::Running {
            // One last read after the exit was recorded.
            let mut rest = Vec::new();
            let _ = f.read_to_end(&mut rest);
            let _ = out.write_all(&rest);
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn inspect_container(store: &Store, id: &str) -> strata_runtime::Result<serde_json::Value> {
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
