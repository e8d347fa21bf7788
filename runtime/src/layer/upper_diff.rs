//! `strata diff`: what a container changed, as docker prints it (A added, C changed,
//! D deleted), read from its upper directory against the image's layers.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::layer::extract::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::layer::write::{is_char_whiteout, opaque_xattr, read_meta, sorted_names};
use crate::util::{Ctx, Result};

/// Kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Added.
    Added,
    /// Changed (content or metadata).
    Changed,
    /// Deleted.
    Deleted,
}

impl Kind {
    /// docker's letter.
    pub fn letter(self) -> char {
        match self {
            Kind::Added => 'A',
            Kind::Changed => 'C',
            Kind::Deleted => 'D',
        }
    }
}

/// One change, at an absolute path in the container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// "/etc/passwd".
    pub path: String,
    /// What happened.
    pub kind: Kind,
}

/// The read-only layers of an image, top first, as the union sees them.
pub struct Lowers {
    /// Layer directories, top first.
    pub dirs: Vec<PathBuf>,
}

enum Found {
    Missing,
    Whiteout,
    Entry(Metadata),
}

fn in_layer(layer: &Path, rel: &Path) -> Found {
    let p = layer.join(rel);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if is_char_whiteout(&p, &m) => Found::Whiteout,
        Ok(m) => Found::Entry(m),
        Err(_) => {
            if let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) {
                let mut wh = OsString::from(WHITEOUT_PREFIX);
                wh.push(name);
                if std::fs::symlink_metadata(layer.join(parent).join(wh)).is_ok() {
                    return Found::Whiteout;
                }
            }
            Found::Missing
        }
    }
}

fn is_opaque_dir(path: &Path) -> bool {
    opaque_xattr(path) || std::fs::symlink_metadata(path.join(OPAQUE_MARKER)).is_ok()
}

impl Lowers {
    /// Look `rel` up in the layers: its metadata if the lower union shows it.
    pub fn lookup(&self, rel: &Path) -> Option<Metadata> {
        let comps: Vec<&std::ffi::OsStr> = rel.iter().collect();
        'layers: for layer in &self.dirs {
            let mut prefix = PathBuf::new();
            for (i, c) in comps.iter().enumerate() {
                prefix.push(c);
                match in_layer(layer, &prefix) {
                    Found::Whiteout => return None,
                    Found::Missing => continue 'layers,
                    Found::Entry(m) => {
                        if i + 1 == comps.len() {
                            return Some(m);
                        }
                        if !m.is_dir() {
                            return None;
                        }
                        if is_opaque_dir(&layer.join(&prefix)) {
                            // Deeper layers are hidden below this directory.
                            return match in_layer(layer, rel) {
                                Found::Entry(m) => Some(m),
                                _ => None,
                            };
                        }
                    }
                }
            }
            return None;
        }
        None
    }

    /// The names the lower union shows in directory `rel`.
    pub fn list(&self, rel: &Path) -> BTreeSet<OsString> {
        let mut shown = BTreeSet::new();
        let mut hidden = BTreeSet::new();
        if self.lookup(rel).is_none_or(|m| !m.is_dir()) && !rel.as_os_str().is_empty() {
            return shown;
        }
        for layer in &self.dirs {
            let dir = layer.join(rel);
            let Ok(names) = sorted_names(&dir) else {
                if matches!(in_layer(layer, rel), Found::Whiteout) {
                    break;
                }
                continue;
            };
            for n in names {
                if n.as_bytes() == OPAQUE_MARKER.as_bytes() {
                    continue;
                }
                if let Some(h) = n.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                    hidden.insert(OsString::from(std::ffi::OsStr::from_bytes(h)));
                    continue;
                }
                let wh = std::fs::symlink_metadata(dir.join(&n))
                    .is_ok_and(|m| is_char_whiteout(&dir.join(&n), &m));
                if !hidden.contains(&n) {
                    if wh {
                        hidden.insert(n);
                    } else {
                        shown.insert(n);
                    }
                }
            }
            if is_opaque_dir(&dir) {
                break;
            }
        }
        shown
    }
}

fn abs(rel: &Path) -> String {
    format!("/{}", rel.display())
}

fn dir_meta_differs(a: &Metadata, b: &Metadata) -> bool {
    a.mode() != b.mode() || a.uid() != b.uid() || a.gid() != b.gid() || a.mtime() != b.mtime()
}

/// Compute the changes in `upper` over `lowers`. `merged` (the container's merged view) is
/// needed only when the upper holds renamed directories (strata's `redirect`).
pub fn changes(
    lowers: &Lowers,
    upper: &Path,
    merged: &mut dyn FnMut() -> Result<PathBuf>,
) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    walk(lowers, Path::new(""), upper, true, merged, &mut out)?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// Walk one upper directory; returns true if anything below changed.
fn walk(
    lowers: &Lowers,
    rel: &Path,
    dir: &Path,
    lower_visible: bool,
    merged: &mut dyn FnMut() -> Result<PathBuf>,
    out: &mut Vec<Change>,
) -> Result<bool> {
    let mut any = false;
    for name in sorted_names(dir)? {
        let nb = name.as_bytes();
        if nb == OPAQUE_MARKER.as_bytes() || crate::layer::write::is_union_private(nb) {
            continue;
        }
        let src = dir.join(&name);
        let m = std::fs::symlink_metadata(&src).ctx(|| format!("cannot stat {}", src.display()))?;
        if let Some(h) = nb.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            out.push(Change {
                path: abs(&rel.join(std::ffi::OsStr::from_bytes(h))),
                kind: Kind::Deleted,
            });
            any = true;
            continue;
        }
        let r = rel.join(&name);
        if is_char_whiteout(&src, &m) {
            out.push(Change {
                path: abs(&r),
                kind: Kind::Deleted,
            });
            any = true;
            continue;
        }
        let lower = if lower_visible {
            lowers.lookup(&r)
        } else {
            None
        };
        if lower.is_none() && crate::layer::write::is_runtime_mountpoint(&r, &src, &m) {
            continue;
        }
        if !m.is_dir() {
            out.push(Change {
                path: abs(&r),
                kind: if lower.is_some() {
                    Kind::Changed
                } else {
                    Kind::Added
                },
            });
            any = true;
            continue;
        }
        let meta = read_meta(&src);
        let lower_dir = lower.as_ref().filter(|l| l.is_dir());
        let opaque = is_opaque_dir(&src) || meta.redirect.is_some();
        let mut below = false;
        if meta.redirect.is_some() {
            let view = merged()?;
            below |= merged_tree(&r, &view.join(&r), out)?;
        } else {
            below |= walk(
                lowers,
                &r,
                &src,
                lower_dir.is_some() && !opaque,
                merged,
                out,
            )?;
        }
        if opaque && lower_dir.is_some() {
            let mut kept = BTreeSet::new();
            if meta.redirect.is_none() {
                kept = sorted_names(&src)?.into_iter().collect();
            } else if let Ok(v) = merged() {
                kept = sorted_names(&v.join(&r))?.into_iter().collect();
            }
            for n in lowers.list(&r) {
                if !kept.contains(&n) {
                    out.push(Change {
                        path: abs(&r.join(&n)),
                        kind: Kind::Deleted,
                    });
                    below = true;
                }
            }
        }
        match lower_dir {
            None => {
                out.push(Change {
                    path: abs(&r),
                    kind: if lower.is_some() {
                        Kind::Changed
                    } else {
                        Kind::Added
                    },
                });
                any = true;
            }
            Some(l) => {
                if below || dir_meta_differs(&m, l) {
                    out.push(Change {
                        path: abs(&r),
                        kind: Kind::Changed,
                    });
                    any = true;
                }
            }
        }
    }
    Ok(any)
}

/// Everything below a directory of the merged view, as added.
fn merged_tree(rel: &Path, dir: &Path, out: &mut Vec<Change>) -> Result<bool> {
    let mut any = false;
    for name in sorted_names(dir)? {
        let r = rel.join(&name);
        out.push(Change {
            path: abs(&r),
            kind: Kind::Added,
        });
        any = true;
        let p = dir.join(&name);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            merged_tree(&r, &p, out)?;
        }
    }
    Ok(any)
}
