//! `strata fsck` and `strata compact`.

use clap::Args;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Arguments of `strata fsck`.
#[derive(Args, Debug)]
pub struct FsckArgs {
    /// The upper directory to check, or a container's name or id (its upper over its layers).
    #[arg(value_name = "UPPER|CONTAINER", required_unless_present = "image")]
    upper: Option<PathBuf>,
    /// Check a stored image's native layers instead (each over the layers below it).
    #[arg(long, value_name = "IMAGE", conflicts_with_all = ["lowerdir", "repair"])]
    image: Option<String>,
    /// The lower branches it was mounted over (A:B, top first), to check delta origins
    /// (a container's are known).
    #[arg(long, value_name = "DIRS")]
    lowerdir: Option<String>,
    /// Fix what can be fixed safely (block maps claiming more than the file holds).
    #[arg(long)]
    repair: bool,
}

/// Arguments of `strata compact`.
#[derive(Args, Debug)]
pub struct CompactArgs {
    /// Files inside a mounted strata union (or, with --chains, the upper directory).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Flatten every delta of an unmounted upper whose chain of layers below is deeper
    /// than strata's bound (docs/format.md), instead of compacting files in a mount.
    #[arg(long, requires_all = ["lowerdir", "workdir"])]
    chains: bool,
    /// With --chains: the lower branches the upper is mounted over (A:B, top first).
    #[arg(long, value_name = "DIRS")]
    lowerdir: Option<String>,
    /// With --chains: the upper's workdir.
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
}

/// Check an upper directory; non-zero exit while problems remain.
pub fn run_fsck(args: FsckArgs, root: Option<PathBuf>) -> Result<(), String> {
    if let Some(image) = &args.image {
        return fsck_image(image, root);
    }
    let upper_arg = args.upper.clone().unwrap_or_default();
    let lowers = split_dirs(args.lowerdir.as_deref().unwrap_or_default());
    let (upper, lowers) = match names_a_container(&upper_arg) {
        true if args.lowerdir.is_some() => {
            return Err(format!(
            "--lowerdir is for an upper directory; {} names a container, whose layers are known",
            upper_arg.display()
        ))
        }
        true => container_branches(&upper_arg, root, args.repair)?,
        false => (upper_arg.clone(), lowers),
    };
    let findings = strata_fs::delta::fsck::fsck(&upper, &lowers, args.repair)?;
    let mut left = 0;
    for f in &findings {
        let state = if f.repaired { "repaired" } else { "PROBLEM" };
        if !f.repaired {
            left += 1;
        }
        outln!("{state}: {}: {}", f.path.display(), f.problem);
    }
    if left == 0 {
        outln!("{}: clean ({} repaired)", upper.display(), findings.len());
        Ok(())
    } else {
        Err(format!(
            "{left} problem(s) in {}{}",
            upper.display(),
            if args.repair { "" } else { " (try --repair)" }
        ))
    }
}

/// `strata fsck --image NAME`: every native layer of the image; non-zero exit on a problem.
fn fsck_image(image: &str, root: Option<PathBuf>) -> Result<(), String> {
    let store = strata_runtime::store::Store::open(root.as_deref()).map_err(|e| e.to_string())?;
    let layers =
        strata_runtime::image::commands::fsck_image(&store, image).map_err(|e| e.to_string())?;
    let mut problems = 0;
    for (hex, findings) in &layers {
        for f in findings {
            problems += 1;
            outln!(
                "PROBLEM: layer {}: {}: {}",
                &hex[..12],
                f.path.display(),
                f.problem
            );
        }
    }
    if problems > 0 {
        return Err(format!(
            "{problems} problem(s) in the native layers of {image}"
        ));
    }
    outln!("{image}: clean ({} native layer(s) checked)", layers.len());
    Ok(())
}

/// A bare word that is not a directory here names a container (`strata fsck web`); anything
/// with a slash, or an existing directory, is an upper directory as before.
fn names_a_container(arg: &std::path::Path) -> bool {
    let word = arg.as_os_str().as_bytes();
    !word.contains(&b'/') && !arg.is_dir()
}

/// A container's upper directory and lower branches (top first). A repair must not race the
/// daemon serving a running container, so it is refused then.
fn container_branches(
    what: &std::path::Path,
    root: Option<PathBuf>,
    repair: bool,
) -> Result<(PathBuf, Vec<PathBuf>), String> {
    use strata_runtime::container::{self, Paths, Status};
    let store = strata_runtime::store::Store::open(root.as_deref()).map_err(|e| e.to_string())?;
    let name = what.to_string_lossy();
    let id = container::resolve(&store, &name).map_err(|e| e.to_string())?;
    let state = strata_runtime::container::reconcile(&store, &id).map_err(|e| e.to_string())?;
    if repair && state.status == Status::Running {
        return Err(format!(
            "container {name} is running: stop it (`strata stop {name}`) before fsck --repair"
        ));
    }
    let cfg = container::load_config(&store, &id).map_err(|e| e.to_string())?;
    Ok((
        Paths::new(&store, &id).upper(),
        container::lower_dirs(&store, &cfg),
    ))
}

/// Ask the daemon serving each path to make its delta whole (or, with --chains, flatten
/// the deep chains of an unmounted upper).
pub fn run_compact(args: CompactArgs) -> Result<(), String> {
    if args.chains {
        let lowers = split_dirs(args.lowerdir.as_deref().unwrap_or_default());
        let work = args.workdir.clone().unwrap_or_default();
        if args.paths.len() != 1 {
            return Err("compact --chains takes one upper directory (with its --workdir)".into());
        }
        for upper in &args.paths {
            let r = strata_fs::delta::flatten::flatten_upper(upper, &work, &lowers)?;
            outln!(
                "{}: {} delta(s), {} flattened",
                upper.display(),
                r.deltas,
                r.flattened
            );
        }
        return Ok(());
    }
    for p in &args.paths {
        let c = CString::new(p.as_os_str().as_bytes())
            .map_err(|_| format!("{}: bad path", p.display()))?;
        strata_sys::lsetxattr(
            &c,
            OsStr::new(strata_fs::union::ops_xattr::COMPACT_XATTR),
            b"1",
            0,
        )
        .map_err(|e| {
            format!(
                "compact {}: {e} (is it a file inside a mounted strata union?)",
                p.display()
            )
        })?;
    }
    Ok(())
}

/// `A:B:C` as directories, top first.
fn split_dirs(list: &str) -> Vec<PathBuf> {
    list.split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}
