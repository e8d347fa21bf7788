//! Store and image subcommands: `info`, `import`, `images`, `tag`, `rmi`, `inspect`, `history`.

use clap::{Args, Subcommand};
use strata_runtime::store::Store;
use strata_runtime::util::{ago, human_size};
use strata_runtime::{cgroups, container, driver, image, images, rootless};

type R = strata_runtime::Result<()>;

/// The store and image subcommands.
#[derive(Subcommand, Debug)]
pub enum ImageCmd {
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
}

/// Arguments of `strata import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Dockerfile instruction applied to the image config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, ...).
    #[arg(short, long = "change")]
    change: Vec<String>,
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
            ImageCmd::Import(_) | ImageCmd::Rmi { .. } | ImageCmd::Info
        )
    {
        rootless::enter_new()?;
    }
    match cmd {
        ImageCmd::Info => info(store),
        ImageCmd::Import(a) => import(store, a),
        ImageCmd::Images => list(store),
        ImageCmd::Tag { source, target } => images::tag(store, &source, &target),
        ImageCmd::Rmi {
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
        ImageCmd::Inspect { names } => inspect(store, names),
        ImageCmd::History { image } => history(store, &image),
    }
}

fn import(store: &Store, a: ImportArgs) -> R {
    let id = if a.tarball == "-" {
        images::import(store, std::io::stdin().lock(), &a.name, &a.change, "-")?
    } else {
        let f = std::fs::File::open(&a.tarball)
            .map_err(|e| strata_runtime::Error(format!("cannot open {}: {e}", a.tarball)))?;
        images::import(store, f, &a.name, &a.change, &a.tarball)?
    };
    println!("{id}");
    Ok(())
}

fn list(store: &Store) -> R {
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

/// Each name as a container if it resolves to one, else as an image.
fn inspect(store: &Store, names: Vec<String>) -> R {
    let mut out = Vec::new();
    for n in names {
        let v = match container::resolve(store, &n) {
            Ok(id) => crate::containers::inspect_container(store, &id)?,
            Err(cerr) => images::inspect(store, &n).map_err(|ierr| {
                // A damaged item's own error says more than "no such".
                let damaged = [&ierr, &cerr]
                    .into_iter()
                    .find(|e| e.0.contains("corrupt metadata"));
                match damaged {
                    Some(e) => strata_runtime::Error(e.0.clone()),
                    None => strata_runtime::Error(format!("no such image or container: {n}")),
                }
            })?,
        };
        out.push(v);
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

fn history(store: &Store, image: &str) -> R {
    println!(
        "{:<14} {:<16} {:<50} {:<10} COMMENT",
        "IMAGE", "CREATED", "CREATED BY", "SIZE"
    );
    for r in images::history(store, image)? {
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
    println!("Networking: {}", strata_runtime::network::backend());
    println!(
        "Native layers: commits of fuse containers keep their upper as it is (deltas, metadata-only copies, redirects); \
         auto runs their images on the fuse driver, --driver overlay mounts a plain copy of each native layer, materialized once (layers/ID.plain)"
    );
    println!("Images: {}", image::list_image_ids(store)?.len());
    println!("Containers: {}", container::list_ids(store)?.len());
    Ok(())
}
