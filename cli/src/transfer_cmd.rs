//! `strata load`, `save`, `pull` and `push`: images in and out of the store.

use std::path::PathBuf;

use clap::Args;
use strata_runtime::store::Store;
use strata_runtime::transfer;

type R = strata_runtime::Result<()>;

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

pub fn load(store: &Store, a: LoadArgs) -> R {
    let stored = transfer::load(store, a.input.as_deref(), a.quiet)?;
    for s in stored {
        if a.quiet {
            println!("{}", s.id);
            continue;
        }
        if s.tags.is_empty() {
            println!("Loaded image ID: {}", s.id);
        }
        for t in s.tags {
            println!("Loaded image: {t} ({})", s.id);
        }
    }
    Ok(())
}

pub fn save(store: &Store, a: SaveArgs) -> R {
    let format = transfer::Format::parse(&a.format)?;
    if a.output.as_os_str() == "-" && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(strata_runtime::Error(
            "refusing to write an archive to a terminal: redirect stdout or use -o FILE".into(),
        ));
    }
    transfer::save(store, &a.images, format, &a.output, a.quiet)
}
