//! `strata volume`: docker's named volume commands.

use std::collections::BTreeMap;

use clap::Subcommand;
use strata_runtime::store::Store;
use strata_runtime::volume;

type R = strata_runtime::Result<()>;

/// The volume subcommands.
#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a volume (a random name when none is given); print its name.
    Create {
        /// Label KEY=VALUE.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Driver (only local).
        #[arg(short, long, default_value = "local")]
        driver: String,
        /// Name.
        name: Option<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Print names only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print volumes as JSON, docker's shape.
    Inspect {
        /// Volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while a container uses them).
    #[command(alias = "remove")]
    Rm {
        /// No error for a volume that does not exist.
        #[arg(short, long)]
        force: bool,
        /// Volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove the anonymous volumes no container uses (all unused ones with -a).
    Prune {
        /// Named volumes too.
        #[arg(short, long)]
        all: bool,
        /// Do not ask (strata never asks; accepted for docker's scripts).
        #[arg(short, long)]
        force: bool,
    },
}

/// Run one volume subcommand.
pub fn run(store: &Store, cmd: VolumeCmd) -> R {
    match cmd {
        VolumeCmd::Create {
            labels,
            driver,
            name,
        } => {
            if driver != "local" {
                return Err(strata_runtime::Error(format!(
                    "unsupported volume driver {driver:?}: only local"
                )));
            }
            let labels: BTreeMap<String, String> = labels
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            let v = volume::create(store, name.as_deref(), labels, false)?;
            println!("{}", v.name);
            Ok(())
        }
        VolumeCmd::Ls { quiet } => {
            let all = volume::list(store)?;
            if !quiet {
                println!("{:<15} VOLUME NAME", "DRIVER");
            }
            for v in all {
                let line = if quiet {
                    v.name
                } else {
                    format!("{:<15} {}", v.driver, v.name)
                };
                if crate::containers::print_line(&line).is_err() {
                    break;
                }
            }
            Ok(())
        }
        VolumeCmd::Inspect { names } => {
            let all = names
                .iter()
                .map(|n| volume::inspect(store, n))
                .collect::<strata_runtime::Result<Vec<_>>>()?;
            let text = serde_json::to_string_pretty(&all)
                .map_err(|e| strata_runtime::Error(format!("cannot print JSON: {e}")))?;
            let _ = crate::containers::print_line(&text);
            Ok(())
        }
        VolumeCmd::Rm { force, names } => {
            for n in names {
                volume::remove(store, &n, force)?;
                println!("{n}");
            }
            Ok(())
        }
        VolumeCmd::Prune { all, force: _ } => {
            let gone = volume::prune(store, all)?;
            if !gone.is_empty() {
                println!("Deleted Volumes:");
                for n in &gone {
                    println!("{n}");
                }
            }
            println!("Total reclaimed volumes: {}", gone.len());
            Ok(())
        }
    }
}
