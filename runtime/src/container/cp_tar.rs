//! The tar side of `cp`: a tree written from directory fds, every name opened with
//! `O_NOFOLLOW`, so a symlink is stored as one and never followed.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode, SFlag};

use crate::err;
use crate::util::{Ctx, Result};

/// A tar being written from fds.
pub struct TarOut<'a> {
    b: tar::Builder<&'a mut dyn Write>,
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

impl<'a> TarOut<'a> {
    /// A tar on `w`.
    pub fn new(w: &'a mut dyn Write) -> Self {
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        TarOut { b }
    }

    /// Add entry `name` of `dir` (its contents when `name` is `.`) as `as_name`.
    pub fn top(&mut self, dir: BorrowedFd<'_>, name: &OsStr, as_name: &Path) -> Result<()> {
        if name == "." {
            if as_name != Path::new(".") {
                let st = nix::sys::stat::fstat(dir).ctx(|| "cannot stat the source")?;
                self.header_only(&st, as_name, tar::EntryType::Directory)?;
            }
            let d = openat(
                dir,
                ".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| "cannot open the source directory")?;
            let prefix = if as_name == Path::new(".") {
                Path::new("")
            } else {
                as_name
            };
            return self.children(d.as_fd(), prefix);
        }
        self.entry(dir, name, as_name)
    }

    fn header_only(&mut self, st: &FileStat, name: &Path, t: tar::EntryType) -> Result<()> {
        let mut h = header(st, t);
        h.set_size(0);
        // Directories end in `/`, as docker's and GNU tar's do.
        let mut named = name.as_os_str().to_os_string();
        if t == tar::EntryType::Directory {
            named.push("/");
        }
        self.b
            .append_data(&mut h, Path::new(&named), std::io::empty())
            .ctx(|| format!("cannot write {} to the tar", name.display()))
    }

    fn children(&mut self, dir: BorrowedFd<'_>, prefix: &Path) -> Result<()> {
        let dup = dir
            .try_clone_to_owned()
            .ctx(|| "cannot duplicate a descriptor")?;
        let mut d = nix::dir::Dir::from_fd(dup).ctx(|| "cannot list a directory")?;
        let mut names: Vec<std::ffi::OsString> = Vec::new();
        for e in d.iter() {
            let e = e.ctx(|| "cannot list a directory")?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(<OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(n).to_os_string());
            }
        }
        names.sort();
        for n in names {
            self.entry(dir, &n, &prefix.join(&n))?;
        }
        Ok(())
    }

    fn entry(&mut self, dir: BorrowedFd<'_>, name: &OsStr, as_name: &Path) -> Result<()> {
        let shown = || as_name.display().to_string();
        let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .ctx(|| format!("cannot stat {}", shown()))?;
        let k = kind(&st);
        if k == SFlag::S_IFDIR {
            self.header_only(&st, as_name, tar::EntryType::Directory)?;
            let d = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| format!("cannot open {}", shown()))?;
            self.children(d.as_fd(), as_name)
        } else if k == SFlag::S_IFREG {
            let f = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| format!("cannot open {}", shown()))?;
            let st = nix::sys::stat::fstat(f.as_fd()).ctx(|| format!("cannot stat {}", shown()))?;
            let mut h = header(&st, tar::EntryType::Regular);
            let file = std::fs::File::from(f);
            let len = st.st_size as u64;
            self.b
                .append_data(&mut h, as_name, std::io::Read::take(file, len))
                .ctx(|| format!("cannot write {} to the tar", shown()))
        } else if k == SFlag::S_IFLNK {
            let target =
                readlinkat(dir, name).ctx(|| format!("cannot read the link {}", shown()))?;
            let mut h = header(&st, tar::EntryType::Symlink);
            h.set_size(0);
            self.b
                .append_link(&mut h, as_name, &target)
                .ctx(|| format!("cannot write {} to the tar", shown()))
        } else {
            let t = match k {
                SFlag::S_IFCHR => tar::EntryType::Char,
                SFlag::S_IFBLK => tar::EntryType::Block,
                SFlag::S_IFIFO => tar::EntryType::Fifo,
                _ => return Err(err!("{} is a socket: not copied", shown())),
            };
            let mut h = header(&st, t);
            let rdev = st.st_rdev;
            let _ = h.set_device_major(nix::sys::stat::major(rdev) as u32);
            let _ = h.set_device_minor(nix::sys::stat::minor(rdev) as u32);
            h.set_size(0);
            self.b
                .append_data(&mut h, as_name, std::io::empty())
                .ctx(|| format!("cannot write {} to the tar", shown()))
        }
    }

    /// End the archive.
    pub fn finish(self) -> Result<()> {
        let w = self.b.into_inner().ctx(|| "cannot finish the tar")?;
        w.flush().ctx(|| "cannot write the tar")
    }
}

fn header(st: &FileStat, t: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(t);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(st.st_size.max(0) as u64);
    h
}
