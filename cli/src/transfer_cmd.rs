//! `strata load`, `save`, `pull` and `push`: images in and out of the store.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use strata_runtime::store::Store;
use strata_runtime::transfer;

type R = strata_runtime::Result<()>;

/// The subcommands moving images in and out of the store.
#[derive(Subcommand, Debug)]
pub enum TransferCmd {
    /// Load images from a docker-archive, an OCI archive or an OCI layout directory.
    Load(LoadArgs),
    /// Save images as a docker-archive, an OCI archive or an OCI layout directory.
    Save(SaveArgs),
    /// Pull an image from a registry (OCI distribution API); only missing layers are fetched.
    Pull(PullArgs),
    /// Push an image to a registry; blobs the registry has are skipped or mounted.
    Push(PushArgs),
}

/// Run one transfer subcommand.
pub fn run(store: &Store, cmd: TransferCmd) -> R {
    // Ctrl-C leaves no staging and no half-written archive behind.
    strata_runtime::interrupt::install(store);
    match cmd {
        TransferCmd::Load(a) => load(store, a),
        TransferCmd::Save(a) => save(store, a),
        TransferCmd::Pull(a) => pull(store, a),
        TransferCmd::Push(a) => push(store, a),
    }
}

/// Arguments of `strata load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Archive to read: docker-archive or OCI archive (tar, maybe gzip/zstd compressed), or an
    /// OCI layout directory; stdin when absent or -.
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// No progress bars and no summary: print only the loaded image ids.
    #[arg(short, long)]
    quiet: bool,
}

/// Arguments of `strata save`.
#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Output file (or directory for oci-dir); - for stdout.
    #[arg(short, long)]
    output: PathBuf,
    /// docker-archive (default), oci-archive or oci-dir.
    #[arg(long, default_value = "docker-archive")]
    format: String,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
    /// Images (name[:tag] or id).
    #[arg(required = true)]
    images: Vec<String>,
}

fn load(store: &Store, a: LoadArgs) -> R {
    let stored = transfer::load(store, a.input.as_deref(), a.quiet)?;
    for s in stored {
        if a.quiet {
            outln!("{}", s.id);
            continue;
        }
        if s.tags.is_empty() {
            outln!("Loaded image ID: {}", s.id);
        }
        for t in s.tags {
            outln!("Loaded image: {t} ({})", s.id);
        }
    }
    Ok(())
}

fn save(store: &Store, a: SaveArgs) -> R {
    let format = transfer::Format::parse(&a.format)?;
    if a.output.as_os_str() == "-" && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(strata_runtime::Error(
            "refusing to write an archive to a terminal: redirect stdout or use -o FILE".into(),
        ));
    }
    transfer::save(store, &a.images, format, &a.output, a.quiet)
}

/// Registry options shared by `strata pull` and `strata push`.
#[derive(Args, Debug)]
pub struct RegistryArgs {
    /// Credentials USER:PASSWORD (default: docker's ~/.docker/config.json).
    #[arg(long)]
    creds: Option<String>,
    /// Plain http (always used for localhost and 127.0.0.1).
    #[arg(long)]
    insecure: bool,
    /// No progress bars and no summary: print only the image id (pull) or digest (push).
    #[arg(short, long)]
    quiet: bool,
    /// Seconds the registry may stay silent before strata gives up (also the limit for a
    /// whole manifest or token).
    #[arg(long, value_name = "SECS", default_value_t = transfer::registry::DEFAULT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86400))]
    timeout: u64,
}

impl RegistryArgs {
    fn options(&self) -> strata_runtime::Result<transfer::registry::Options> {
        Ok(transfer::registry::Options {
            creds: self
                .creds
                .as_deref()
                .map(transfer::auth::Creds::parse)
                .transpose()?,
            insecure: self.insecure,
            quiet: self.quiet,
            timeout: Some(std::time::Duration::from_secs(self.timeout)),
        })
    }
}

/// Arguments of `strata pull`.
#[derive(Args, Debug)]
pub struct PullArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// [HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST] (short names are docker.io/library/...).
    reference: String,
    /// Lay out eStargz layers from their table of contents only: containers fetch files on
    /// first read (other layers are pulled whole). A later plain pull completes them.
    #[arg(long)]
    lazy: bool,
}

/// Arguments of `strata push`.
#[derive(Args, Debug)]
pub struct PushArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Image in the store (name[:tag] or id).
    image: String,
    /// Destination HOST[:PORT]/PATH[:TAG] (default: the image's name).
    reference: Option<String>,
    /// Layer format: gzip (default) or estargz (lazily pullable, still plain gzip to others).
    #[arg(long, value_name = "FORMAT", default_value = "gzip", value_parser = ["gzip", "estargz"])]
    format: String,
}

fn pull(store: &Store, a: PullArgs) -> R {
    let o = a.registry.options()?;
    let p = transfer::pull::pull_opts(store, &a.reference, &o, a.lazy)?;
    if o.quiet {
        outln!("{}", p.id);
        return Ok(());
    }
    outln!(
        "Pulled {} ({}): {} layers, {} fetched ({}), {} already present",
        a.reference,
        p.digest,
        p.layers,
        p.fetched,
        strata_runtime::util::human_size(p.bytes),
        p.layers - p.fetched
    );
    match p.tag {
        Some(t) => outln!("Image: {t} ({})", p.id),
        None => outln!("Image: {}", p.id),
    }
    Ok(())
}

fn push(store: &Store, a: PushArgs) -> R {
    let o = a.registry.options()?;
    let target = a.reference.as_deref().unwrap_or(&a.image);
    let p = if a.format == "estargz" {
        transfer::estargz::push::push(store, &a.image, target, &o)?
    } else {
        transfer::push::push(store, &a.image, target, &o)?
    };
    if o.quiet {
        outln!("{}", p.digest);
        return Ok(());
    }
    outln!(
        "Pushed {}: {} layers, {} uploaded ({}), {} already present, {} mounted",
        p.reference,
        p.layers,
        p.uploaded,
        strata_runtime::util::human_size(p.bytes),
        p.skipped,
        p.mounted
    );
    outln!("Digest: {}", p.digest);
    Ok(())
}
