//! `strata cp`: files between a container's root and the host, both ways, running or
//! stopped, or as a tar stream. Container paths are resolved as the container sees them
//! (`openat2(RESOLVE_IN_ROOT)` from the root's fd: an absolute symlink in the container
//! points inside it, never at the host), and everything below is walked and written from
//! directory fds with `O_NOFOLLOW`, so a container symlink is copied as a symlink and never
//! followed out of its root.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};

use super::commit::MergedView;
use super::cp_extract::{Extract, Owner};
use super::cp_view::RwView;
use crate::container;
use crate::err;
use crate::store::Store;
use crate::util::{Ctx, Result};

/// Where `cp` reads from or writes to on the host side.
pub enum HostEnd<'a> {
    /// A host path (`cp CTR:/src DEST`, `cp SRC CTR:/dest`).
    Path(PathBuf),
    /// A tar stream (`-`): written to for copies out, read from for copies in.
    Tar(&'a mut dyn Write),
    /// A tar stream read from (`cp - CTR:/dir`).
    TarIn(&'a mut dyn Read),
}

/// Options of `cp`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpOptions {
    /// `-a`: keep the files' owners (else: the receiving side's user owns them).
    pub archive: bool,
    /// `-L`: follow a symlink named as the source.
    pub follow: bool,
}

const DIR_FLAGS: OFlag = OFlag::O_PATH
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_CLOEXEC);

/// Split a user's path into (parent, final name); `.` when it names a directory's contents
/// (`dir/.`), as docker reads it.
fn split(p: &str) -> (String, OsString) {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return ("/".into(), ".".into());
    }
    if trimmed.ends_with("/.") || trimmed == "." {
        return (trimmed.trim_end_matches('.').to_string(), ".".into());
    }
    match trimmed.rfind('/') {
        Some(i) => (
            if i == 0 {
                "/".into()
            } else {
                trimmed[..i].to_string()
            },
            trimmed[i + 1..].into(),
        ),
        None => (".".into(), trimmed.into()),
    }
}

/// Open directory `rel` of the container root `root` as the container resolves it.
fn open_in_root(root: BorrowedFd<'_>, rel: &str) -> nix::Result<OwnedFd> {
    let rel = rel.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    openat2(
        root,
        rel,
        OpenHow::new()
            .flags(DIR_FLAGS)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
    )
}

/// Resolve the container path `p` to (its directory's fd, final name), following a final
/// symlink inside the root when `follow`.
fn resolve(root: BorrowedFd<'_>, p: &str, follow: bool) -> Result<(OwnedFd, OsString)> {
    let (parent, name) = split(p);
    let dir = open_in_root(root, &parent)
        .map_err(|e| err!("no such directory in the container: {parent}: {e}"))?;
    if !follow || name == "." {
        return Ok((dir, name));
    }
    // -L: let the kernel resolve the final symlink inside the root, then find where it
    // ended up (its path below the root) and start again from its directory.
    let target = openat2(
        root,
        p.trim_start_matches('/'),
        OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
    )
    .map_err(|e| err!("no such file in the container: {p}: {e}"))?;
    let abs = fd_path(target.as_fd())?;
    let base = fd_path(root)?;
    let inner = abs
        .strip_prefix(&base)
        .map_err(|_| err!("{p} resolves outside the container's root"))?;
    let inner = format!("/{}", inner.display());
    let (parent, name) = split(&inner);
    let dir = open_in_root(root, &parent)
        .map_err(|e| err!("cannot open {parent} in the container: {e}"))?;
    Ok((dir, name))
}

fn fd_path(fd: BorrowedFd<'_>) -> Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .ctx(|| "cannot read a descriptor's path")
}

fn is_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> Option<bool> {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .ok()
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// `strata cp CONTAINER:SRC DEST`: copy `src` out of the container to the host end.
pub fn copy_out(store: &Store, id: &str, src: &str, host: HostEnd<'_>, o: CpOptions) -> Result<()> {
    let cfg = container::load_config(store, id)?;
    let view = MergedView::open(store, &cfg)?;
    let root = openat(nix::fcntl::AT_FDCWD, view.path(), DIR_FLAGS, Mode::empty())
        .ctx(|| "cannot open the container's root")?;
    let (dir, name) = resolve(root.as_fd(), src, o.follow)?;
    if name != "." && fstatat(dir.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).is_err()
    {
        return Err(err!("no such file or directory in the container: {src}"));
    }
    match host {
        HostEnd::Tar(w) => {
            let mut t = super::cp_tar::TarOut::new(w);
            t.top(dir.as_fd(), &name, Path::new(tar_name(&name)))?;
            t.finish()
        }
        HostEnd::TarIn(_) => Err(err!("copying out needs a host path or -")),
        HostEnd::Path(dest) => {
            let (into, top) = host_target(&dest, &name)?;
            let (r, w) = std::io::pipe().ctx(|| "cannot create a pipe")?;
            std::thread::scope(|s| {
                let writer = s.spawn(move || -> Result<()> {
                    let mut w = w;
                    let mut t = super::cp_tar::TarOut::new(&mut w);
                    t.top(dir.as_fd(), &name, &top)?;
                    t.finish()
                });
                let mut a = tar::Archive::new(r);
                a.set_preserve_ownerships(o.archive);
                a.set_preserve_permissions(true);
                a.set_overwrite(true);
                let unpacked = a
                    .unpack(&into)
                    .map_err(|e| err!("cannot write to {}: {e}", into.display()));
                drop(a);
                let written = writer
                    .join()
                    .unwrap_or_else(|_| Err(err!("the copy thread failed")));
                written.and(unpacked)
            })
        }
    }
}

fn tar_name(name: &OsStr) -> &OsStr {
    if name == "." {
        OsStr::new(".")
    } else {
        name
    }
}

/// Where a copy to host `dest` goes: into `dest` as `name` when it is a directory, else
/// into its parent under `dest`'s own name.
fn host_target(dest: &Path, name: &OsStr) -> Result<(PathBuf, PathBuf)> {
    if dest.is_dir() {
        return Ok((dest.to_path_buf(), PathBuf::from(name)));
    }
    let s = dest.to_string_lossy();
    if s.ends_with('/') {
        return Err(err!("{} is not a directory", dest.display()));
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(err!("{}: no such directory", parent.display()));
    }
    let file = dest
        .file_name()
        .ok_or_else(|| err!("{} names no file", dest.display()))?;
    Ok((parent.to_path_buf(), PathBuf::from(file)))
}

/// `strata cp SRC CONTAINER:DEST`: copy the host end into the container (stopped ones
/// too: their root is mounted for the copy).
pub fn copy_in(store: &Store, id: &str, dest: &str, host: HostEnd<'_>, o: CpOptions) -> Result<()> {
    let cfg = container::load_config(store, id)?;
    let view = RwView::open(store, &cfg)?;
    let root = openat(nix::fcntl::AT_FDCWD, view.path(), DIR_FLAGS, Mode::empty())
        .ctx(|| "cannot open the container's root")?;
    let owner = if o.archive { Owner::Keep } else { Owner::Root };
    match host {
        HostEnd::TarIn(r) => {
            let dir = open_in_root(root.as_fd(), dest)
                .map_err(|_| err!("the destination {dest} must be a directory in the container"))?;
            Extract::new(dir, owner).run(r)
        }
        HostEnd::Tar(_) => Err(err!("copying in needs a host path or -")),
        HostEnd::Path(src) => {
            let (sparent, sname) = split(&src.to_string_lossy());
            let sdir = openat(
                nix::fcntl::AT_FDCWD,
                sparent.as_str(),
                DIR_FLAGS,
                Mode::empty(),
            )
            .ctx(|| format!("cannot open {sparent}"))?;
            let sname = if o.follow && sname != "." {
                // -L on the host side: the host's own resolution is the user's to choose.
                let real = std::fs::canonicalize(&src)
                    .ctx(|| format!("cannot resolve {}", src.display()))?;
                return copy_in(
                    store,
                    id,
                    dest,
                    HostEnd::Path(real),
                    CpOptions { follow: false, ..o },
                );
            } else {
                sname
            };
            if sname != "."
                && fstatat(
                    sdir.as_fd(),
                    sname.as_os_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .is_err()
            {
                return Err(err!("no such file or directory: {}", src.display()));
            }
            // Into DEST when it is a directory in the container, else DEST is the new name.
            let (into, top) = match open_in_root(root.as_fd(), dest) {
                Ok(d) => (d, sname.clone()),
                Err(_) => {
                    let (dparent, dname) = split(dest);
                    let d = open_in_root(root.as_fd(), &dparent)
                        .map_err(|_| err!("no such directory in the container: {dparent}"))?;
                    if is_dir_at(d.as_fd(), &dname) == Some(true) {
                        return Err(err!("cannot resolve {dest} in the container"));
                    }
                    (d, dname)
                }
            };
            let (r, w) = std::io::pipe().ctx(|| "cannot create a pipe")?;
            std::thread::scope(|s| {
                let writer = s.spawn(move || -> Result<()> {
                    let mut w = w;
                    let mut t = super::cp_tar::TarOut::new(&mut w);
                    t.top(sdir.as_fd(), &sname, Path::new(tar_name(&top)))?;
                    t.finish()
                });
                let mut r = r;
                let extracted = Extract::new(into, owner).run(&mut r);
                drop(r);
                let written = writer
                    .join()
                    .unwrap_or_else(|_| Err(err!("the copy thread failed")));
                extracted.and(written)
            })
        }
    }
}

/// Make the directory `dir` and its missing parents in container `id`, resolved in its
/// root as `cp` resolves a destination; existing directories keep their mode and owner
/// (new ones: 0755, owned by `owner` or the container's root), as docker's COPY leaves them.
pub fn mkdir_p(store: &Store, id: &str, dir: &str, owner: Option<(u32, u32)>) -> Result<()> {
    let cfg = container::load_config(store, id)?;
    let view = RwView::open(store, &cfg)?;
    let root = openat(nix::fcntl::AT_FDCWD, view.path(), DIR_FLAGS, Mode::empty())
        .ctx(|| "cannot open the container's root")?;
    let mut cur = String::from("/");
    for part in dir.split('/').filter(|p| !p.is_empty() && *p != ".") {
        let parent = open_in_root(root.as_fd(), &cur)
            .map_err(|e| err!("cannot open {cur} in the container: {e}"))?;
        match mkdirat(parent.as_fd(), part, Mode::from_bits_truncate(0o755)) {
            Ok(()) => {
                if let Some((u, g)) = owner {
                    // As cp's extraction: an owner the store cannot record stays the root's.
                    let _ = nix::unistd::fchownat(
                        parent.as_fd(),
                        part,
                        Some(nix::unistd::Uid::from_raw(u)),
                        Some(nix::unistd::Gid::from_raw(g)),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    );
                }
            }
            Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(err!("cannot create {cur}{part} in the container: {e}")),
        }
        cur = format!("{cur}{part}/");
    }
    Ok(())
}
