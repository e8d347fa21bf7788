//! `strata fsck` and `strata compact`.

use clap::Args;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Arguments of `strata fsck`.
#[derive(Args, Debug)]
pub struct FsckArgs {
    /// The upper directory to check.
    upper: PathBuf,
    /// The lower branches it was mounted over (A:B, top first), to check delta origins.
    #[arg(long, value_name = "DIRS")]
    lowerdir: Option<String>,
    /// Fix what can be fixed safely (block maps claiming more than the file holds).
    #[arg(long)]
    repair: bool,
}

/// Arguments of `strata compact`.
#[derive(Args, Debug)]
pub struct CompactArgs {
    /// Files inside a mounted strata union.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// Check an upper directory; non-zero exit while problems remain.
pub fn run_fsck(args: FsckArgs) -> Result<(), String> {
    let lowers: Vec<PathBuf> = args
        .lowerdir
        .as_deref()
        .map(|l| {
            l.split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    let findings = strata_fs::fsck::fsck(&args.upper, &lowers, args.repair)?;
    let mut left = 0;
    for f in &findings {
        let state = if f.repaired { "repaired" } else { "PROBLEM" };
        if !f.repaired {
            left += 1;
        }
        println!("{state}: {}: {}", f.path.display(), f.problem);
    }
    if left == 0 {
        println!(
            "{}: clean ({} repaired)",
            args.upper.display(),
            findings.len()
        );
        Ok(())
    } else {
        Err(format!(
            "{left} problem(s) in {}{}",
            args.upper.display(),
            if args.repair { "" } else { " (try --repair)" }
        ))
    }
}

/// Ask the daemon serving each path to make its delta whole.
pub fn run_compact(args: CompactArgs) -> Result<(), String> {
    for p in &args.paths {
        let c = CString::new(p.as_os_str().as_bytes())
            .map_err(|_| format!("{}: bad path", p.display()))?;
        strata_fs::sys::lsetxattr(&c, OsStr::new(strata_fs::ops_xattr::COMPACT_XATTR), b"1", 0)
            .map_err(|e| {
                format!(
                    "compact {}: {e} (is it a file inside a mounted strata union?)",
                    p.display()
                )
            })?;
    }
    Ok(())
}
