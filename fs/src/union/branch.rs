//! Branches (layers) and path resolution that can never leave them.
//!
//! Every path inside a branch is resolved with openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) from the branch root, and final components
//! are then used with *at() calls that do not follow symlinks. A symlink stored in a
//! branch is data, never a path strata walks through.

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// One directory tree taking part in the union.
#[derive(Debug)]
pub struct Branch {
    /// The directory as given by the user.
    pub path: PathBuf,
    /// An O_PATH fd of the root, the anchor of every resolution.
    root: OwnedFd,
    /// st_dev of the root.
    pub dev: u64,
    /// Small index of the filesystem the branch lives on, used to build unique inode numbers.
    pub fs_index: u64,
    /// For a lazily pulled lower branch: what fetches a file's data before it is opened.
    pub fill: Option<super::lazy_fill::Fill>,
}

fn resolve_flags() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// Turn a relative branch path into what openat2 expects ("." for the root).
fn rel_or_dot(rel: &Path) -> &Path {
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

impl Branch {
    /// Open `path` as a branch; it must be a directory.
    pub fn open(path: &Path, what: &str) -> Result<Branch, String> {
        let root = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("{what} {}: {}", path.display(), e.desc()))?;
        let st = nix::sys::stat::fstat(&root)
            .map_err(|e| format!("{what} {}: {}", path.display(), e.desc()))?;
        Ok(Branch {
            path: path.to_path_buf(),
            root,
            dev: st.st_dev,
            fs_index: 0,
            fill: None,
        })
    }

    /// The root as a borrowed fd.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Open `rel` inside the branch with `flags`, never leaving the branch and never
    /// following a symlink in any component.
    pub fn open_at(&self, rel: &Path, flags: OFlag, mode: u32) -> io::Result<OwnedFd> {
        if let Some(f) = &self.fill {
            // Every open that can read data passes here: a lazy file is filled (and verified)
            // first, so no caller ever sees its placeholder.
            if !flags.intersects(OFlag::O_PATH | OFlag::O_DIRECTORY) {
                f.0.ensure(rel)?;
            }
        }
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .mode(Mode::from_bits_truncate(mode))
            .resolve(resolve_flags());
        if rel.as_os_str().len() < PATH_CHUNK {
            return nix::fcntl::openat2(self.root.as_fd(), rel_or_dot(rel), how)
                .map_err(io::Error::from);
        }
        // A merged path may be longer than PATH_MAX (the kernel only limits each path
        // a caller passes, and callers can work relative to a deep directory): walk it
        // in pieces the kernel accepts, each as confined as the whole would be.
        let (dir, last) = walk_long(self.root.as_fd(), rel)?;
        nix::fcntl::openat2(dir.as_fd(), last.as_path(), how).map_err(io::Error::from)
    }

    /// An O_PATH fd of the directory `rel` (ENOTDIR if it is not one).
    pub fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.open_at(rel, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)
    }

    /// lstat of `rel` inside the branch.
    pub fn stat(&self, rel: &Path) -> io::Result<FileStat> {
        let fd = self.open_at(rel, OFlag::O_PATH, 0)?;
        nix::sys::stat::fstat(&fd).map_err(io::Error::from)
    }
}

/// Longest path string (without its NUL) one openat2 call takes: PATH_MAX - 1.
const PATH_CHUNK: usize = libc::PATH_MAX as usize - 1;

/// For a relative path too long for one call: an O_PATH fd of a directory on the way and
/// the rest of the path (shorter than [`PATH_CHUNK`]), each piece opened with
/// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS from the previous one.
fn walk_long(root: BorrowedFd<'_>, rel: &Path) -> io::Result<(OwnedFd, PathBuf)> {
    use std::path::Component;
    let mut pieces = vec![PathBuf::new()];
    for c in rel.components() {
        // Merged paths are built from checked names: anything else is not ours.
        let Component::Normal(c) = c else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        let cur = pieces
            .last_mut()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))?;
        let len = cur.as_os_str().len();
        if len > 0 && len + 1 + c.len() > PATH_CHUNK {
            pieces.push(PathBuf::from(c));
        } else {
            cur.push(c);
        }
    }
    let last = pieces.pop().unwrap_or_default();
    let mut dir = root.try_clone_to_owned()?;
    for p in pieces {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(resolve_flags());
        dir = nix::fcntl::openat2(dir.as_fd(), p.as_path(), how)?;
    }
    Ok((dir, last))
}

/// lstat of `name` inside the directory `dir`.
pub fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<FileStat> {
    nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(io::Error::from)
}

/// Open `name` inside `dir` without following a symlink there; the fd is O_CLOEXEC.
pub fn open_in(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlag, mode: u32) -> io::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .mode(Mode::from_bits_truncate(mode))
        .resolve(resolve_flags());
    nix::fcntl::openat2(dir, name, how).map_err(io::Error::from)
}

/// Remove `name` in `dir` and everything below it, never following symlinks.
pub fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    use nix::unistd::UnlinkatFlags;
    match nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(nix::errno::Errno::EISDIR) | Err(nix::errno::Errno::EPERM) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = open_in(dir, name, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?;
    clear_dir(sub.as_fd())?;
    nix::unistd::unlinkat(dir, name, UnlinkatFlags::RemoveDir)?;
    Ok(())
}

/// Remove everything inside the directory `dir`.
pub fn clear_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let fd = nix::fcntl::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let names: Vec<std::ffi::OsString> = d
        .iter()
        .filter_map(Result::ok)
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    for n in names {
        remove_tree(dir, &n)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths longer than PATH_MAX inside a branch open like short ones.
    #[test]
    fn open_past_path_max() {
        let root = std::env::temp_dir().join(format!("strata-branch-{}", std::process::id()));
        let comp = "c".repeat(200);
        let mut rel = PathBuf::new();
        for _ in 0..30 {
            rel.push(&comp);
        }
        // create_dir_all would pass the whole path to one mkdir: go level by level.
        std::fs::create_dir_all(&root).unwrap();
        let mut fd = nix::fcntl::open(&root, OFlag::O_PATH, Mode::empty()).unwrap();
        for _ in 0..30 {
            nix::sys::stat::mkdirat(&fd, comp.as_str(), Mode::from_bits_truncate(0o755)).unwrap();
            fd = nix::fcntl::openat(&fd, comp.as_str(), OFlag::O_PATH, Mode::empty()).unwrap();
        }
        let b = Branch::open(&root, "test").unwrap();
        assert!(rel.as_os_str().len() > 4096);
        assert!(b.open_dir(&rel).is_ok());
        let f = rel.join("file");
        assert!(b
            .open_at(&f, OFlag::O_CREAT | OFlag::O_WRONLY, 0o600)
            .is_ok());
        assert!(b.stat(&f).is_ok());
        assert_eq!(
            b.stat(&rel.join("nope")).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        assert_eq!(
            b.stat(&rel.join("..")).unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        let _ = std::process::Command::new("rm")
            .arg("-rf")
            .arg(&root)
            .status();
    }
}
