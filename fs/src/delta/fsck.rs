//! `strata fsck`: check (and repair what is safe to repair in) an upper directory.

use crate::delta::format::Ident;
use crate::union::chain::MAX_DEPTH;
use crate::union::meta::Meta;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use strata_sys as sys;

/// One problem found.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The upper entry concerned.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: String,
    /// Whether --repair fixed it.
    pub repaired: bool,
}

const META_NAMES: [&str; 2] = ["trusted.strata.meta", "user.strata.meta"];

fn cpath(p: &Path) -> Option<CString> {
    CString::new(p.as_os_str().as_bytes()).ok()
}

/// Check every strata record under `upper`; with `lowers`, also that each delta's lower
/// file is still the one it was made from. `repair` fixes block maps that claim more than
/// the file holds.
pub fn fsck(upper: &Path, lowers: &[PathBuf], repair: bool) -> Result<Vec<Finding>, String> {
    let meta = std::fs::symlink_metadata(upper)
        .map_err(|e| format!("upper directory {}: {e}", upper.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", upper.display()));
    }
    let mut out = Vec::new();
    let mut stack = vec![upper.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                out.push(Finding {
                    path: dir.clone(),
                    problem: format!("cannot read directory: {e}"),
                    repaired: false,
                });
                continue;
            }
        };
        for ent in entries.flatten() {
            let path = ent.path();
            let Ok(ft) = ent.file_type() else { continue };
            if ft.is_dir() {
                stack.push(path.clone());
            }
            if ft.is_file() {
                check_file(&path, lowers, repair, &mut out);
            }
        }
    }
    Ok(out)
}

fn check_file(path: &Path, lowers: &[PathBuf], repair: bool, out: &mut Vec<Finding>) {
    let Some(cp) = cpath(path) else { return };
    for name in META_NAMES {
        let value = match sys::lgetxattr(&cp, OsStr::new(name)) {
            Ok(Some(v)) => v,
            _ => continue,
        };
        let mut meta = match Meta::decode(&value) {
            Ok(m) => m,
            Err(e) => {
                out.push(Finding {
                    path: path.to_path_buf(),
                    problem: format!(
                        "corrupt {name}: {e} (the file cannot be served; restore it or delete it)"
                    ),
                    repaired: false,
                });
                continue;
            }
        };
        let size = std::fs::symlink_metadata(path)
            .map(|m| m.len())
            .unwrap_or(0);
        if let Some(map) = meta.delta.as_mut() {
            let mut problems = Vec::new();
            let blocks = size.div_ceil(map.block);
            if map.ranges.last().is_some_and(|r| r.1 > blocks) {
                problems.push(format!(
                    "block map claims blocks past the end of the file ({} blocks)",
                    blocks
                ));
                map.cut(blocks);
            }
            if map.limit > size {
                problems.push(format!(
                    "lower limit {} is past the file size {size}",
                    map.limit
                ));
                map.limit = size;
            }
            if !problems.is_empty() {
                let repaired =
                    repair && sys::lsetxattr(&cp, OsStr::new(name), &meta.encode(), 0).is_ok();
                out.push(Finding {
                    path: path.to_path_buf(),
                    problem: problems.join("; "),
                    repaired,
                });
            }
        }
        if let (Some((below, lpath)), false) = (&meta.data, lowers.is_empty()) {
            // `data +K`: K layers below the upper, so lower branch K-1.
            let problem = match below.checked_sub(1).and_then(|l| lowers.get(l)) {
                None => Some(format!(
                    "its data is {below} layers below, but only {} lower branches are given",
                    lowers.len()
                )),
                Some(l) => match nix::sys::stat::lstat(&l.join(lpath)) {
                    Err(e) => Some(format!(
                        "its lower file {} is gone: {e}",
                        l.join(lpath).display()
                    )),
                    Ok(st) => match meta.ident {
                        Some(was) if was != Ident::of(&st) => Some(format!(
                            "its lower file {} changed since the copy was made",
                            l.join(lpath).display()
                        )),
                        // That file may be a pushed-down upper's copy: check its chain.
                        _ => chain_problem(lowers, below - 1, lpath),
                    },
                },
            };
            if let Some(problem) = problem {
                out.push(Finding {
                    path: path.to_path_buf(),
                    problem,
                    repaired: false,
                });
            }
        }
    }
}

/// What is wrong below the entry at `rel` in lower `layer` of `lowers`, following the
/// `data +K` records of pushed-down uppers down to a plain file (docs/format.md).
fn chain_problem(lowers: &[PathBuf], layer: usize, rel: &Path) -> Option<String> {
    let (mut layer, mut rel) = (layer, rel.to_path_buf());
    for _ in 0..MAX_DEPTH {
        let p = lowers.get(layer)?.join(&rel);
        let cp = cpath(&p)?;
        let value = META_NAMES
            .iter()
            .find_map(|n| sys::lgetxattr(&cp, OsStr::new(n)).ok().flatten())?;
        let m = match Meta::decode(&value) {
            Ok(m) => m,
            Err(e) => {
                return Some(format!(
                    "the record of {} below it is corrupt: {e}",
                    p.display()
                ))
            }
        };
        let (below, next) = m.data?;
        let Some(nl) = layer.checked_add(below).filter(|l| *l < lowers.len()) else {
            return Some(format!(
                "{} below it names a layer {below} further down, past the {} lower branches given",
                p.display(),
                lowers.len()
            ));
        };
        let np = lowers[nl].join(&next);
        match nix::sys::stat::lstat(&np) {
            Err(e) => {
                return Some(format!(
                    "{} (named by {} below it) is gone: {e}",
                    np.display(),
                    p.display()
                ))
            }
            Ok(st) => {
                if m.ident.is_some_and(|was| was != Ident::of(&st)) {
                    return Some(format!(
                        "{} changed since {} below it was made from it",
                        np.display(),
                        p.display()
                    ));
                }
            }
        }
        (layer, rel) = (nl, next);
    }
    Some(format!("its data chain is deeper than {MAX_DEPTH} layers"))
}
