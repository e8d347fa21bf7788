//! Subcommands on a container's filesystem changes: `diff`, `commit`, `export`.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use strata_runtime::container::{self, commit};
use strata_runtime::isolation::rootless;
use strata_runtime::store::Store;
use strata_runtime::util;

type R = strata_runtime::Result<()>;

/// The subcommands reading a container's changes.
#[derive(Subcommand, Debug)]
pub enum ChangesCmd {
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

/// Run one changes subcommand.
pub fn run(store: &Store, cmd: ChangesCmd) -> R {
    let (ChangesCmd::Diff { container: c }
    | ChangesCmd::Commit { container: c, .. }
    | ChangesCmd::Export { container: c, .. }) = &cmd;
    let id = container::resolve(store, c)?;
    // Rootless: the upper holds files owned by subordinate ids, readable in the container's
    // user namespace.
    if rootless::needed() {
        container::enter_for_container(store, &id)?;
    }
    if matches!(cmd, ChangesCmd::Export { .. } | ChangesCmd::Commit { .. }) {
        strata_runtime::interrupt::install(store);
    }
    match cmd {
        ChangesCmd::Diff { .. } => {
            let mut out = std::io::stdout().lock();
            for ch in commit::diff(store, &id)? {
                if writeln!(out, "{} {}", ch.kind.letter(), ch.path).is_err() {
                    break;
                }
            }
            Ok(())
        }
        ChangesCmd::Commit {
            change,
            message,
            author,
            image,
            ..
        } => {
            let o = commit::CommitOptions {
                reference: image,
                changes: change,
                message,
                author,
            };
            outln!("{}", commit::commit(store, &id, &o)?);
            Ok(())
        }
        ChangesCmd::Export { output, .. } => export(store, &id, output),
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
    // Written beside the target, synced and renamed, so a failed or interrupted export
    // leaves no partial file.
    util::write_atomic_with(&path, |f| {
        commit::export(store, id, std::io::BufWriter::new(f))
    })
}
