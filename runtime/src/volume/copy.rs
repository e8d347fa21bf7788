//! Filling a new, empty volume with what the image has at its mount point, as docker does
//! on a volume's first use. Symlinks are copied as links, never followed: the tree is the
//! image's, possibly hostile.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::util::{Ctx, Result};

/// Entries deeper than this are not copied (a bound on a hostile image's nesting).
const MAX_DEPTH: usize = 128;

/// Copy the contents of `src` (a directory in the container's root) into `dst`, keeping
/// modes and owners; `dst`'s own mode and owner become `src`'s.
pub fn copy_contents(src: &Path, dst: &Path) -> Result<()> {
    let m = std::fs::symlink_metadata(src).ctx(|| format!("cannot stat {}", src.display()))?;
    if !m.is_dir() {
        return Ok(());
    }
    copy_dir(src, dst, 0)?;
    set_owner_mode(dst, &m)
}

fn set_owner_mode(p: &Path, m: &std::fs::Metadata) -> Result<()> {
    std::os::unix::fs::lchown(p, Some(m.uid()), Some(m.gid()))
        .ctx(|| format!("cannot chown {}", p.display()))?;
    if !m.file_type().is_symlink() {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .ctx(|| format!("cannot chmod {}", p.display()))?;
    }
    Ok(())
}

fn copy_dir(src: &Path, dst: &Path, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(crate::err!(
            "{} is nested more than {MAX_DEPTH} levels deep: cannot copy it into the volume",
            src.display()
        ));
    }
    for e in std::fs::read_dir(src).ctx(|| format!("cannot list {}", src.display()))? {
        let e = e.ctx(|| format!("cannot list {}", src.display()))?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let m =
            std::fs::symlink_metadata(&from).ctx(|| format!("cannot stat {}", from.display()))?;
        let ft = m.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to).ctx(|| format!("cannot create {}", to.display()))?;
            copy_dir(&from, &to, depth + 1)?;
        } else if ft.is_symlink() {
            let target =
                std::fs::read_link(&from).ctx(|| format!("cannot read {}", from.display()))?;
            std::os::unix::fs::symlink(target, &to)
                .ctx(|| format!("cannot create {}", to.display()))?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).ctx(|| format!("cannot copy {}", from.display()))?;
        } else {
            // Devices, fifos and sockets have no content to carry into a volume.
            continue;
        }
        set_owner_mode(&to, &m)?;
    }
    Ok(())
}
