//! COPY/ADD `--chmod` and `--chown`, applied to the staged sources before they are copied
//! into the step's container (so the copy carries the modes and owners docker would give):
//! `--chmod` sets every copied file and directory's mode, `--chown` their owner, with
//! names looked up in the stage's own /etc/passwd and /etc/group.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::context;
use super::engine::{Scratch, StageState};
use crate::err;
use crate::image;
use crate::store::Store;
use crate::util::{Ctx, Result};

/// `--chmod=MODE`: octal (docker's form); the mode bits.
pub fn parse_chmod(m: &str) -> Result<u32> {
    let v = u32::from_str_radix(m, 8)
        .ok()
        .filter(|v| *v <= 0o7777)
        .ok_or_else(|| err!("invalid --chmod={m}: use an octal mode such as 0755"))?;
    Ok(v)
}

/// `--chown=USER[:GROUP]`: numeric ids or names of the stage's image (its /etc/passwd and
/// /etc/group). Without a group, the group id is the user id's number, as docker does.
pub(super) fn resolve_chown(
    store: &Store,
    st: &StageState,
    scratch: &mut Scratch<'_>,
    spec: &str,
) -> Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group == Some("") {
        return Err(err!("invalid --chown={spec}: use USER[:GROUP]"));
    }
    let numeric = |s: &str| s.parse::<u32>().ok();
    let need_files = numeric(user).is_none() || group.is_some_and(|g| numeric(g).is_none());
    let (passwd, groups) = if need_files {
        image_files(store, st, scratch)?
    } else {
        (String::new(), String::new())
    };
    let lookup = |table: &str, name: &str, what: &str| -> Result<u32> {
        if let Some(n) = numeric(name) {
            return Ok(n);
        }
        table
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 3 && f[0] == name).then(|| f[2].parse::<u32>().ok())?
            })
            .next()
            .ok_or_else(|| err!("--chown={spec}: no {what} {name} in the image"))
    };
    let uid = lookup(&passwd, user, "user")?;
    let gid = match group {
        Some(g) => lookup(&groups, g, "group")?,
        None => uid,
    };
    Ok((uid, gid))
}

/// The stage image's /etc/passwd and /etc/group (empty when missing).
fn image_files(
    store: &Store,
    st: &StageState,
    scratch: &mut Scratch<'_>,
) -> Result<(String, String)> {
    let existed = image::list_image_ids(store)?;
    let id = image::save_image(store, &st.img)?;
    if !existed.contains(&id) && !scratch.ids.contains(&id) {
        scratch.ids.push(id.clone());
    }
    let read = |p: &str| -> String {
        context::stage_image(store, &id, &[p.to_string()])
            .ok()
            .and_then(|s| {
                s.paths
                    .first()
                    .and_then(|f| std::fs::read_to_string(f).ok())
            })
            .unwrap_or_default()
    };
    Ok((read("/etc/passwd"), read("/etc/group")))
}

/// Give every entry of the staged tree at `p` the mode `mode` (not symlinks) and, with
/// `owner`, that owner (symlinks themselves, not their targets).
pub fn apply(p: &Path, mode: Option<u32>, owner: Option<(u32, u32)>) -> Result<()> {
    let md = std::fs::symlink_metadata(p).ctx(|| format!("cannot read {}", p.display()))?;
    if md.is_dir() {
        for e in std::fs::read_dir(p).ctx(|| format!("cannot list {}", p.display()))? {
            let e = e.ctx(|| format!("cannot list {}", p.display()))?;
            apply(&e.path(), mode, owner)?;
        }
    }
    if let (Some(m), false) = (mode, md.file_type().is_symlink()) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))
            .ctx(|| format!("cannot set the mode of {}", p.display()))?;
    }
    if let Some((u, g)) = owner {
        std::os::unix::fs::lchown(p, Some(u), Some(g))
            .ctx(|| format!("cannot set the owner of {}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_chmod;

    #[test]
    fn chmod_is_octal_and_bounded() {
        assert_eq!(parse_chmod("0755").ok(), Some(0o755));
        assert_eq!(parse_chmod("4755").ok(), Some(0o4755));
        assert!(parse_chmod("u+x").is_err());
        assert!(parse_chmod("17777").is_err());
        assert!(parse_chmod("").is_err());
    }
}
