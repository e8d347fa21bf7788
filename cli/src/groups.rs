//! Command groups: `strata fs ...` (the filesystem tools), docker's `container ...` and
//! `image ...` management commands (aliases of the top-level ones), and the grouped
//! `strata --help`.

use std::path::Path;

use clap::Subcommand;
use strata_runtime::store::Store;

use crate::{
    changes_cmd, containers, docker_cmds, images_cmd, logging, mount, system_cmd, tools, trace_cmd,
    transfer_cmd,
};

type R = strata_runtime::Result<()>;

/// `strata fs ...`.
#[derive(Subcommand, Debug)]
pub enum FsCmd {
    /// Mount a union of branches (options as fuse-overlayfs).
    Mount(mount::MountArgs),
    /// Unmount a strata mount.
    Umount(mount::UmountArgs),
    /// Check the strata records in an upper directory.
    Fsck(tools::FsckArgs),
    /// Make delta files whole copies now.
    Compact(tools::CompactArgs),
    /// Read traces written by `strata mount --trace`.
    Trace(trace_cmd::TraceArgs),
    /// Which branch serves each PATH of a mounted union.
    Whence(trace_cmd::WhenceArgs),
    /// Live counters of a mounted strata union (FUSE requests, copy-ups, deltas).
    Stats(trace_cmd::StatsArgs),
}

/// Run one filesystem tool.
pub fn run_fs(cmd: FsCmd, log_level: &str, root: Option<&Path>) -> Result<(), String> {
    match cmd {
        FsCmd::Mount(args) => mount::run_mount(args, log_level),
        FsCmd::Umount(args) => {
            logging::init_stderr(log_level);
            mount::run_umount(args)
        }
        FsCmd::Fsck(args) => tools::run_fsck(args, root.map(Path::to_path_buf)),
        FsCmd::Compact(args) => tools::run_compact(args),
        FsCmd::Trace(args) => trace_cmd::run_trace(args),
        FsCmd::Whence(args) => trace_cmd::run_whence(args),
        FsCmd::Stats(args) => trace_cmd::run_stats(args),
    }
}

/// `strata container ...`.
#[derive(Subcommand, Debug)]
pub enum ContainerGroup {
    /// List containers (as `strata ps`).
    #[command(visible_alias = "list")]
    Ls(containers::PsArgs),
    /// Show containers' metadata (as `strata inspect --type container`).
    Inspect {
        /// Go template applied to each container.
        #[arg(short, long)]
        format: Option<String>,
        /// Containers.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every stopped container.
    Prune {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    #[command(flatten)]
    Base(containers::ContainerCmd),
    #[command(flatten)]
    More(docker_cmds::MoreCmd),
    #[command(flatten)]
    Changes(changes_cmd::ChangesCmd),
}

/// Run one `container` subcommand.
pub fn run_container(store: &Store, cmd: ContainerGroup) -> R {
    match cmd {
        ContainerGroup::Ls(a) => containers::run(store, containers::ContainerCmd::Ps(a)),
        ContainerGroup::Inspect { format, names } => images_cmd::run(
            store,
            images_cmd::ImageCmd::Inspect(images_cmd::InspectArgs {
                format,
                kind: Some("container".into()),
                size: false,
                names,
            }),
        ),
        ContainerGroup::Prune { force } => system_cmd::prune(store, false, force, true, false),
        ContainerGroup::Base(c) => containers::run(store, c),
        ContainerGroup::More(c) => docker_cmds::run(store, c),
        ContainerGroup::Changes(c) => changes_cmd::run(store, c),
    }
}

/// `strata image ...`.
#[derive(Subcommand, Debug)]
pub enum ImageGroup {
    /// List images (as `strata images`).
    #[command(visible_alias = "list")]
    Ls(images_cmd::ImagesArgs),
    /// Remove images (as `strata rmi`).
    #[command(visible_alias = "remove")]
    Rm {
        /// Remove even if tagged several times or used by containers.
        #[arg(short, long)]
        force: bool,
        /// Images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show images' metadata (as `strata inspect --type image`).
    Inspect {
        /// Go template applied to each image.
        #[arg(short, long)]
        format: Option<String>,
        /// Images.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show an image's layers (as `strata history`).
    History(images_cmd::HistoryArgs),
    /// Add a tag to an image (as `strata tag`).
    Tag {
        /// Existing image.
        source: String,
        /// New name[:tag].
        target: String,
    },
    /// Import a rootfs tarball as an image (as `strata import`).
    Import(images_cmd::ImportArgs),
    /// Remove untagged images (-a: every image no container uses).
    Prune {
        /// Every unused image, not just untagged ones.
        #[arg(short, long)]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    #[command(flatten)]
    Transfer(transfer_cmd::TransferCmd),
}

/// Run one `image` subcommand.
pub fn run_image(store: &Store, cmd: ImageGroup) -> R {
    use images_cmd::ImageCmd;
    let c = match cmd {
        ImageGroup::Ls(a) => ImageCmd::Images(a),
        ImageGroup::Rm { force, images } => ImageCmd::Rmi { force, images },
        ImageGroup::Inspect { format, names } => ImageCmd::Inspect(images_cmd::InspectArgs {
            format,
            kind: Some("image".into()),
            size: false,
            names,
        }),
        ImageGroup::History(a) => ImageCmd::History(a),
        ImageGroup::Tag { source, target } => ImageCmd::Tag { source, target },
        ImageGroup::Import(a) => ImageCmd::Import(a),
        ImageGroup::Prune { all, force } => {
            return system_cmd::prune(store, all, force, false, true)
        }
        ImageGroup::Transfer(t) => return transfer_cmd::run(store, t),
    };
    images_cmd::run(store, c)
}

/// Which heading of `strata --help` each command goes under.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "Containers",
        &[
            "run", "create", "ps", "logs", "exec", "start", "stop", "restart", "kill", "rm",
            "wait", "attach", "cp", "top", "stats", "rename", "pause", "unpause", "port", "diff",
            "commit", "export",
        ],
    ),
    (
        "Images",
        &[
            "build", "builder", "images", "pull", "push", "save", "load", "import", "tag", "rmi",
            "history", "inspect", "login", "logout",
        ],
    ),
    ("Volumes and networks", &["volume", "network"]),
    (
        "Filesystem tools",
        &[
            "fs", "mount", "umount", "fsck", "compact", "trace", "whence",
        ],
    ),
    ("System", &["info", "version", "events", "system"]),
    ("Integrations", &["snapshotter"]),
    ("Management groups", &["container", "image"]),
];

/// `strata --help`'s template: the commands under their headings (any command not listed
/// above goes under "Other commands", so none is ever hidden).
pub fn help_template(cmd: &clap::Command) -> String {
    let subs: Vec<(String, String)> = cmd
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| {
            let about = c.get_about().map(|a| a.to_string()).unwrap_or_default();
            (c.get_name().to_string(), about)
        })
        .collect();
    let width = subs.iter().map(|(n, _)| n.len()).max().unwrap_or(8) + 2;
    let mut out = String::from("{about-with-newline}\n{usage-heading} {usage}\n");
    let mut listed: Vec<&str> = Vec::new();
    let section = |title: &str, names: Vec<&(String, String)>, out: &mut String| {
        if names.is_empty() {
            return;
        }
        out.push_str(&format!("\n{title}:\n"));
        for (n, a) in names {
            let first = a.lines().next().unwrap_or("");
            out.push_str(&format!("  {n:<width$}{first}\n"));
        }
    };
    for (title, names) in GROUPS {
        let found: Vec<&(String, String)> = names
            .iter()
            .filter_map(|n| subs.iter().find(|(s, _)| s == n))
            .collect();
        listed.extend(names.iter().copied());
        section(title, found, &mut out);
    }
    let rest: Vec<&(String, String)> = subs
        .iter()
        .filter(|(n, _)| !listed.contains(&n.as_str()) && n != "help")
        .collect();
    section("Other commands", rest, &mut out);
    out.push_str(&format!(
        "  {:<width$}Print this message or the help of the given command\n",
        "help"
    ));
    out.push_str("\nOptions:\n{options}\n\nRun 'strata COMMAND --help' for more on a command.");
    out
}
