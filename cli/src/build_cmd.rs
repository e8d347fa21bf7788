//! `strata build`: an image from a Dockerfile and a context directory.

use std::path::PathBuf;

use clap::Args;
use strata_runtime::build::engine::{self, BuildOptions};
use strata_runtime::store::Store;

type R = strata_runtime::Result<()>;

/// Arguments of `strata build`.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name and tag of the result (NAME[:TAG]); may be given several times.
    #[arg(short, long = "tag")]
    tag: Vec<String>,
    /// The Dockerfile (default CONTEXT/Dockerfile).
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// Build-time variable K=V.
    #[arg(long = "build-arg")]
    build_arg: Vec<String>,
    /// Build up to this stage.
    #[arg(long)]
    target: Option<String>,
    /// Do not use the build cache.
    #[arg(long)]
    no_cache: bool,
    /// Print only the image id.
    #[arg(short, long)]
    quiet: bool,
    /// Label K=V on the result.
    #[arg(long)]
    label: Vec<String>,
    /// Target platform (only the host's).
    #[arg(long)]
    platform: Option<String>,
    /// Always pull base images that name a registry (missing ones are pulled anyway).
    #[arg(long)]
    pull: bool,
    /// Progress output: auto, plain or tty (all print docker's plain form), quiet (as -q).
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Storage driver of the step containers: fuse (delta layers), overlay or auto.
    #[arg(long, default_value = "auto")]
    driver: String,
    /// The build context directory.
    context: PathBuf,
}

fn kv(s: &str, what: &str) -> strata_runtime::Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .or_else(|| std::env::var(s).ok().map(|v| (s.to_string(), v)))
        .ok_or_else(|| strata_runtime::Error(format!("invalid {what} {s:?}: use KEY=VALUE")))
}

/// Run `strata build`.
pub fn run(store: &Store, a: BuildArgs) -> R {
    let quiet = match a.progress.as_str() {
        "auto" | "plain" | "tty" => a.quiet,
        "quiet" => true,
        other => {
            return Err(strata_runtime::Error(format!(
                "invalid --progress {other:?}: use auto, plain, tty or quiet"
            )))
        }
    };
    let o = BuildOptions {
        context: a.context,
        file: a.file,
        tags: a.tag,
        build_args: a
            .build_arg
            .iter()
            .map(|s| kv(s, "--build-arg"))
            .collect::<Result<_, _>>()?,
        target: a.target,
        quiet,
        labels: a
            .label
            .iter()
            .map(|s| kv(s, "--label"))
            .collect::<Result<_, _>>()?,
        platform: a.platform,
        no_cache: a.no_cache,
        driver: a.driver,
        pull: a.pull,
    };
    strata_runtime::interrupt::install(store);
    let id = engine::build(store, &o)?;
    outln!("{id}");
    Ok(())
}

/// `strata builder` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum BuilderCmd {
    /// Remove the build cache (its entries and the layers only they use).
    Prune {
        /// Do not ask (strata never asks: accepted for docker's scripts).
        #[arg(short, long)]
        force: bool,
        /// Everything (the cache holds nothing else: accepted for docker's scripts).
        #[arg(short, long)]
        all: bool,
    },
}

/// Run a `strata builder` subcommand.
pub fn run_builder(store: &Store, cmd: BuilderCmd) -> R {
    match cmd {
        BuilderCmd::Prune { .. } => {
            let n = strata_runtime::build::cache::prune(store)?;
            outln!("Deleted build cache entries: {n}");
            Ok(())
        }
    }
}
