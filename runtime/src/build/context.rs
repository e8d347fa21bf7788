//! COPY/ADD sources staged in a private directory: context files with `.dockerignore`
//! applied (never following a symlink out of the context: a symlink below a source is
//! copied as a symlink), or files of an earlier stage or image (`--from`), read with `cp`'s
//! in-root resolution.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::dockerignore::DockerIgnore;
use crate::container::cp::{self, CpOptions, HostEnd};
use crate::container::{self, RunOptions};
use crate::err;
use crate::store::{remove_tree, Store};
use crate::util::{Ctx, Result};

/// A staging directory removed on drop.
pub struct Staged {
    /// Where the staged sources are.
    pub dir: PathBuf,
    /// The staged sources, in the order named.
    pub paths: Vec<PathBuf>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
    }
}

/// The context's `.dockerignore` (none when the file is missing).
pub fn ignore_of(context: &Path) -> Result<Option<DockerIgnore>> {
    match std::fs::read_to_string(context.join(".dockerignore")) {
        Ok(t) => Ok(Some(DockerIgnore::parse(&t)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err!("cannot read .dockerignore: {e}")),
    }
}

/// Stage the context sources `srcs` (paths relative to the context).
pub fn stage_context(store: &Store, context: &Path, srcs: &[String]) -> Result<Staged> {
    let root = context
        .canonicalize()
        .ctx(|| format!("cannot read the context {}", context.display()))?;
    let ignore = ignore_of(&root)?;
    let st = Staged {
        dir: store.staging_dir("build-src")?,
        paths: Vec::new(),
    };
    let mut st = st;
    // Wildcards (Go's filepath.Match, as docker): each match is a source of its own.
    let mut expanded = Vec::new();
    for s in srcs {
        if s.contains(['*', '?', '[']) {
            let found = glob_context(&root, s, ignore.as_ref())?;
            if found.is_empty() {
                return Err(err!(
                    "{s}: no source files were specified (nothing matches)"
                ));
            }
            expanded.extend(found);
        } else {
            expanded.push(s.clone());
        }
    }
    for (i, s) in expanded.iter().enumerate() {
        let rel = s.trim_start_matches('/').trim_end_matches('/');
        let rel = if rel.is_empty() || rel == "." {
            ""
        } else {
            rel
        };
        let p = root.join(rel);
        let c = p
            .canonicalize()
            .ctx(|| format!("{s}: no such file in the build context"))?;
        if !c.starts_with(&root) {
            return Err(err!("{s} is outside the build context"));
        }
        let relc = c
            .strip_prefix(&root)
            .unwrap_or(Path::new(""))
            .to_string_lossy()
            .into_owned();
        if !relc.is_empty() && ignore.as_ref().is_some_and(|ig| ig.is_excluded(&relc)) {
            return Err(err!("{s}: excluded by .dockerignore"));
        }
        let slot = st.dir.join(i.to_string());
        std::fs::create_dir(&slot).ctx(|| "cannot make a staging directory")?;
        let name = c
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("ctx"));
        let out = slot.join(name);
        copy_tree(&c, &out, &relc, ignore.as_ref())?;
        st.paths.push(out);
    }
    Ok(st)
}

/// The context paths (relative, sorted) that `pattern` matches segment by segment, `*`
/// never crossing a `/`; symlinks are matched by name, not followed; ignored paths skipped.
fn glob_context(root: &Path, pattern: &str, ig: Option<&DockerIgnore>) -> Result<Vec<String>> {
    let segs: Vec<&str> = pattern
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut level = vec![String::new()];
    for seg in segs {
        let pat =
            glob::Pattern::new(seg).map_err(|e| err!("{pattern}: bad wildcard pattern: {e}"))?;
        let mut next = Vec::new();
        for dir in &level {
            let abs = if dir.is_empty() {
                root.to_path_buf()
            } else {
                root.join(dir)
            };
            // Only real directories are descended into (never a symlink out of the context).
            if !std::fs::symlink_metadata(&abs).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let mut names: Vec<String> = std::fs::read_dir(&abs)
                .ctx(|| format!("cannot list {}", abs.display()))?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| pat.matches_with(n, opts))
                .collect();
            names.sort();
            for n in names {
                let rel = if dir.is_empty() {
                    n
                } else {
                    format!("{dir}/{n}")
                };
                if !ig.is_some_and(|ig| ig.is_excluded(&rel)) {
                    next.push(rel);
                }
            }
        }
        level = next;
    }
    Ok(level)
}

fn copy_tree(src: &Path, dst: &Path, rel: &str, ig: Option<&DockerIgnore>) -> Result<()> {
    let md = std::fs::symlink_metadata(src).ctx(|| format!("cannot read {}", src.display()))?;
    if md.file_type().is_symlink() {
        let t = std::fs::read_link(src).ctx(|| format!("cannot read {}", src.display()))?;
        std::os::unix::fs::symlink(t, dst).ctx(|| format!("cannot stage {}", src.display()))?;
    } else if md.is_dir() {
        std::fs::create_dir(dst).ctx(|| format!("cannot stage {}", src.display()))?;
        let mut names: Vec<_> = std::fs::read_dir(src)
            .ctx(|| format!("cannot list {}", src.display()))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            let r = if rel.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", n.to_string_lossy())
            };
            if let Some(ig) = ig {
                let is_dir = std::fs::symlink_metadata(src.join(&n)).is_ok_and(|m| m.is_dir());
                if ig.is_excluded(&r) && !(is_dir && ig.may_contain_included(&r)) {
                    continue;
                }
            }
            copy_tree(&src.join(&n), &dst.join(&n), &r, ig)?;
        }
        std::fs::set_permissions(
            dst,
            std::fs::Permissions::from_mode(md.permissions().mode()),
        )
        .ctx(|| format!("cannot stage {}", src.display()))?;
    } else if md.is_file() {
        std::fs::copy(src, dst).ctx(|| format!("cannot stage {}", src.display()))?;
    }
    Ok(())
}

/// Stage `srcs` read from image `image_id`'s root.
pub fn stage_image(store: &Store, image_id: &str, srcs: &[String]) -> Result<Staged> {
    let st = Staged {
        dir: store.staging_dir("build-src")?,
        paths: Vec::new(),
    };
    let mut st = st;
    let ro = RunOptions {
        image: image_id.to_string(),
        cmd: vec!["/bin/true".into()],
        entrypoint: Some(String::new()),
        network: "none".into(),
        driver: "auto".into(),
        ..RunOptions::default()
    };
    let cfg = container::create(store, &ro)?;
    let res = (|| -> Result<()> {
        for (i, s) in srcs.iter().enumerate() {
            let slot = st.dir.join(i.to_string());
            std::fs::create_dir(&slot).ctx(|| "cannot make a staging directory")?;
            let name = Path::new(s.trim_end_matches('/'))
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("root"));
            let out = slot.join(&name);
            let o = CpOptions {
                archive: true,
                follow: false,
            };
            cp::copy_out(store, &cfg.id, s, HostEnd::Path(out.clone()), o)?;
            st.paths.push(out);
        }
        Ok(())
    })();
    let _ = container::remove(store, &cfg.id, true);
    res?;
    Ok(st)
}
