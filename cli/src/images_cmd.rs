//! Store and image subcommands: `info`, `import`, `images`, `tag`, `rmi`, `inspect`, `history`.

use clap::{Args, Subcommand};
use strata_runtime::container;
use strata_runtime::image::commands as images;
use strata_runtime::isolation::rootless;
use strata_runtime::store::Store;

type R = strata_runtime::Result<()>;

/// The store and image subcommands.
#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Show the store location and the storage driver that would be used, with the reason.
    Info {
        /// Go template over the info (fields: ID, Name, Driver, DriverStatus, DockerRootDir,
        /// CgroupVersion, Containers, ContainersRunning, ContainersPaused, ContainersStopped,
        /// Images, ServerVersion, KernelVersion, OperatingSystem, Architecture, NCPU, MemTotal), or `json`.
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Import a rootfs tarball (plain or gzip; - for stdin) as an image.
    Import(ImportArgs),
    /// List images.
    Images(ImagesArgs),
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
    /// Show an image's or a container's metadata as JSON (docker's shape).
    Inspect(InspectArgs),
    /// Show an image's layers and how they were made.
    History(HistoryArgs),
}

/// Arguments of `strata images` (and `image ls`).
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Print image ids only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show all images (strata keeps no intermediate images: the same list).
    #[arg(short, long)]
    pub all: bool,
    /// Do not truncate ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show digests (strata records none for local images: `<none>`).
    #[arg(long)]
    pub digests: bool,
    /// Go template (fields: ID, Repository, Tag, Digest, CreatedSince, CreatedAt, Size),
    /// `table TEMPLATE`, or `json`.
    #[arg(long)]
    pub format: Option<String>,
    /// Only images of this REPOSITORY[:TAG].
    pub reference: Option<String>,
}

/// Arguments of `strata inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Go template applied to each item (`{{.State.ExitCode}}`, `{{json .Config}}`).
    #[arg(short, long)]
    pub format: Option<String>,
    /// Only look for this kind: container or image.
    #[arg(long = "type", value_parser = ["container", "image"])]
    pub kind: Option<String>,
    /// Accepted for docker's scripts (sizes are always shown for images).
    #[arg(short, long)]
    pub size: bool,
    /// Images or containers.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Arguments of `strata history`.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Do not truncate the CREATED BY column.
    #[arg(long)]
    pub no_trunc: bool,
    /// Print image ids only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Go template (fields: ID, CreatedSince, CreatedAt, CreatedBy, Size, Comment),
    /// `table TEMPLATE`, or `json`.
    #[arg(long)]
    pub format: Option<String>,
    /// Image.
    pub image: String,
}

/// Arguments of `strata import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Dockerfile instruction applied to the image config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, ...).
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Print only the image id: no warnings (such as the device-node summary).
    #[arg(short, long)]
    pub quiet: bool,
    /// Tarball path, or - for stdin.
    tarball: String,
    /// NAME[:TAG].
    name: String,
}

/// Run one store or image subcommand.
pub fn run(store: &Store, cmd: ImageCmd) -> R {
    // Rootless: importing and removing touch files owned by subordinate ids, and `info`
    // probes the drivers, so they work inside a user namespace where the caller is root.
    if rootless::needed()
        && matches!(
            cmd,
            ImageCmd::Import(_) | ImageCmd::Rmi { .. } | ImageCmd::Info { .. }
        )
    {
        rootless::enter_new()?;
    }
    if matches!(cmd, ImageCmd::Import(_)) {
        // After the user namespace is entered: that needs a single-threaded process.
        strata_runtime::interrupt::install(store);
    }
    match cmd {
        ImageCmd::Info { format } => crate::system_cmd::info(store, format.as_deref()),
        ImageCmd::Import(a) => import(store, a),
        ImageCmd::Images(a) => list(store, &a),
        ImageCmd::Tag { source, target } => images::tag(store, &source, &target),
        ImageCmd::Rmi {
            force,
            images: list,
        } => {
            for i in list {
                for line in images::rmi(store, &i, force)? {
                    outln!("{line}");
                }
            }
            Ok(())
        }
        ImageCmd::Inspect(a) => inspect(store, &a),
        ImageCmd::History(a) => history(store, &a),
    }
}

fn import(store: &Store, a: ImportArgs) -> R {
    let fail = |e: String| strata_runtime::Error(format!("cannot import {}: {e}", a.tarball));
    let id = if a.tarball == "-" {
        images::import(store, std::io::stdin().lock(), &a.name, &a.change, "-")
    } else {
        if std::path::Path::new(&a.tarball).is_dir() {
            return Err(fail(format!(
                "it is a directory, and import takes a tarball: tar -C {} -c . | strata import - {}",
                a.tarball, a.name
            )));
        }
        let f = std::fs::File::open(&a.tarball).map_err(|e| fail(e.to_string()))?;
        images::import(store, f, &a.name, &a.change, &a.tarball)
    }
    .map_err(|e| fail(e.0))?;
    outln!("{id}");
    Ok(())
}

fn list(store: &Store, a: &ImagesArgs) -> R {
    use crate::docker_json::{image_row, IMAGE_HEADERS, IMAGE_TABLE};
    let fmt = if a.quiet && a.format.is_none() {
        Some("{{.ID}}")
    } else {
        a.format.as_deref()
    };
    let want = a.reference.as_deref().map(|r| match r.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n.to_string(), Some(t.to_string())),
        _ => (r.to_string(), None),
    });
    let mut out = crate::format::Output::new(fmt, IMAGE_TABLE, IMAGE_HEADERS)
        .map_err(strata_runtime::Error)?;
    let mut seen = std::collections::HashSet::new();
    for row in images::list(store)? {
        if let Some((n, t)) = &want {
            let Some(r) = &row.reference else { continue };
            if &r.name != n || t.as_ref().is_some_and(|t| t != &r.tag) {
                continue;
            }
        }
        // -q lists each image once, as docker does.
        if a.quiet && a.format.is_none() && !seen.insert(row.id.clone()) {
            continue;
        }
        out.row(&image_row(&row, a.no_trunc))
            .map_err(strata_runtime::Error)?;
    }
    crate::print_out(out)
}

/// Each name as a container if it resolves to one (unless --type image), else as an image.
fn inspect(store: &Store, a: &InspectArgs) -> R {
    let mut out = Vec::new();
    let want = a.kind.as_deref();
    for n in &a.names {
        let as_container = || -> strata_runtime::Result<serde_json::Value> {
            let id = container::resolve(store, n)?;
            crate::docker_json::inspect_container(store, &id)
        };
        let v = match want {
            Some("container") => as_container()
                .map_err(|e| strata_runtime::Error(format!("no such container: {n} ({e})")))?,
            Some(_) => crate::docker_json::docker_image(images::inspect(store, n)?),
            None => match container::resolve(store, n) {
                Ok(id) => crate::docker_json::inspect_container(store, &id)?,
                Err(cerr) => images::inspect(store, n)
                    .map(crate::docker_json::docker_image)
                    .map_err(|ierr| {
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
            },
        };
        out.push(v);
    }
    let text = match &a.format {
        Some(f) => {
            let mut lines = Vec::new();
            for v in &out {
                lines.push(crate::format::render(f, v).map_err(strata_runtime::Error)?);
            }
            lines.join("\n")
        }
        None => serde_json::to_string_pretty(&out).unwrap_or_default(),
    };
    crate::print_text(&text)
}

fn history(store: &Store, a: &HistoryArgs) -> R {
    use crate::docker_json::{history_row, HISTORY_HEADERS, HISTORY_TABLE};
    let fmt = if a.quiet && a.format.is_none() {
        Some("{{.ID}}")
    } else {
        a.format.as_deref()
    };
    let mut out = crate::format::Output::new(fmt, HISTORY_TABLE, HISTORY_HEADERS)
        .map_err(strata_runtime::Error)?;
    for r in images::history(store, &a.image)? {
        out.row(&history_row(&r, a.no_trunc))
            .map_err(strata_runtime::Error)?;
    }
    crate::print_out(out)
}
