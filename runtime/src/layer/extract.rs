//! Safe extraction of (possibly hostile) layer tars into a staging directory.
//!
//! Every path is resolved component by component from a directory fd with O_NOFOLLOW, so an
//! entry can never write outside the destination: `..` and absolute names are refused, a path
//! through a symlink is refused (symlink-then-write-through), hard links must name an entry
//! inside the tree. Device nodes other than whiteouts are skipped: a container must not get
//! raw devices from an image. OCI whiteouts become overlayfs whiteouts (char 0/0 and the
//! opaque xattr), which both the kernel overlay and strata's union read.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fstatat, futimens, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use super::sparse::SparseWriter;
use crate::err;
use crate::util::{Ctx, HashingReader, Result};

/// Prefix of OCI whiteout files.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the OCI opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What an extraction produced.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// sha256 hex of the uncompressed tar stream (the layer's diff_id).
    pub diff_hex: String,
    /// Number of tar entries.
    pub entries: u64,
}

/// Extract a tar (plain or gzip, detected by magic) from `reader` into the empty directory
/// `dest`. On error `dest` is left partly filled: the caller removes it.
pub fn extract(reader: impl Read, dest: &Path) -> Result<Extracted> {
    extract_opts(reader, dest, false)
}

/// [`extract`], optionally accepting a tar without entries (an empty layer, as a commit of
/// an unchanged container makes).
pub fn extract_opts(reader: impl Read, dest: &Path, allow_empty: bool) -> Result<Extracted> {
    let mut buffered = BufReader::with_capacity(1 << 16, reader);
    let magic = buffered.fill_buf().ctx(|| "cannot read the tar")?;
    let gzip = magic.len() >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if gzip {
        let dec = flate2::read::MultiGzDecoder::new(buffered);
        extract_plain(dec, dest, allow_empty)
    } else {
        extract_plain(buffered, dest, allow_empty)
    }
}

struct DirMeta {
    rel: Vec<OsString>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
}

struct Extractor {
    root: OwnedFd,
    dest: PathBuf,
    chown: bool,
    dirs: Vec<DirMeta>,
    /// The last parent directory opened, to avoid re-walking deep paths entry after entry.
    cache: Option<(Vec<OsString>, OwnedFd)>,
    /// Device nodes skipped, and the first one's name: reported once at the end (a
    /// distribution's rootfs has dozens in /dev).
    skipped_devices: (u64, String),
}

/// Copy an entry's data, telling a failing source (a truncated or stalled download) from a
/// failing disk: io::copy reports both alike.
fn copy_data(from: &mut impl Read, to: &mut impl Write) -> Result<()> {
    let mut buf = [0u8; 1 << 16];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(err!("cannot read its data: {e}")),
        };
        to.write_all(&buf[..n]).ctx(|| "cannot write the file")?;
    }
}

fn extract_plain(reader: impl Read, dest: &Path, allow_empty: bool) -> Result<Extracted> {
    let mut hashing = HashingReader::new(reader);
    let root = openat(
        nix::fcntl::AT_FDCWD,
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("cannot open {}", dest.display()))?;
    let mut x = Extractor {
        root,
        dest: dest.to_path_buf(),
        chown: nix::unistd::geteuid().is_root(),
        dirs: Vec::new(),
        cache: None,
        skipped_devices: (0, String::new()),
    };
    let mut entries = 0u64;
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let iter = archive.entries().ctx(|| "cannot read the tar")?;
        for entry in iter {
            // The tar crate's messages quote raw entry names: escape them (one line, no
            // terminal control sequences from a hostile archive).
            // The tar crate's messages go on to quote the header's raw bytes ("when
            // getting cksum for <512 bytes of the file>"): cut them off.
            let mut entry = entry.map_err(|e| {
                let msg = e.to_string();
                // "numeric field was not a number: <field bytes> when getting ...": the kind
                // of damage only.
                let msg = msg.split(": ").next().unwrap_or("").escape_debug();
                if entries == 0 {
                    err!("not a tar archive (plain, gzip or zstd)")
                } else {
                    err!("corrupt tar after {entries} entries: {msg}")
                }
            })?;
            entries += 1;
            let raw = entry.path_bytes().into_owned();
            x.entry(&raw, &mut entry).map_err(|e| {
                err!(
                    "refusing the tar: entry {:?}: {e}",
                    String::from_utf8_lossy(&raw)
                )
            })?;
        }
    }
    // The digest covers the whole stream, including padding after the end-of-archive blocks.
    io::copy(&mut hashing, &mut io::sink()).ctx(|| "cannot read the tar")?;
    if entries == 0 && !allow_empty {
        return Err(err!("the tar is empty or not a tar archive"));
    }
    x.finish_dirs()?;
    if let (n @ 1.., first) = &x.skipped_devices {
        tracing::warn!(
            "skipped {n} device node{} ({first}{}): images do not bring devices",
            if *n == 1 { "" } else { "s" },
            if *n == 1 { "" } else { ", ..." }
        );
    }
    Ok(Extracted {
        diff_hex: hashing.finish(),
        entries,
    })
}

/// Split a tar path into checked components; `..` and absolute paths are refused.
pub fn safe_components(raw: &[u8]) -> Result<Vec<OsString>> {
    if raw.first() == Some(&b'/') {
        return Err(err!("absolute path"));
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(err!("path escapes the root ('..')")),
            _ => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Ok(out)
}

fn ts(secs: i64) -> TimeSpec {
    TimeSpec::new(secs, 0)
}

impl Extractor {
    /// Open directory `rel` below the root without following symlinks; create missing
    /// directories when `create` (tars may omit parents).
    fn open_dir(&self, rel: &[OsString], create: bool) -> Result<OwnedFd> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut cur =
            openat(self.root.as_fd(), ".", flags, Mode::empty()).ctx(|| "cannot open the root")?;
        for (i, c) in rel.iter().enumerate() {
            let shown = || {
                rel[..=i]
                    .iter()
                    .map(|s| s.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            };
            let next = match openat(cur.as_fd(), c.as_os_str(), flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => {
                    mkdirat(cur.as_fd(), c.as_os_str(), Mode::from_bits_truncate(0o755))
                        .ctx(|| format!("cannot create {}", shown()))?;
                    openat(cur.as_fd(), c.as_os_str(), flags, Mode::empty())
                        .ctx(|| format!("cannot open {}", shown()))?
                }
                Err(Errno::ELOOP) => return Err(err!("path goes through the symlink {}", shown())),
                Err(Errno::ENOTDIR) => return Err(err!("{} is not a directory", shown())),
                Err(e) => return Err(err!("cannot open {}: {e}", shown())),
            };
            cur = next;
        }
        Ok(cur)
    }

    fn parent(&mut self, rel: &[OsString]) -> Result<OwnedFd> {
        if let Some((p, fd)) = &self.cache {
            if p.as_slice() == rel {
                return fd.try_clone().ctx(|| "dup");
            }
        }
        let fd = self.open_dir(rel, true)?;
        self.cache = Some((rel.to_vec(), fd.try_clone().ctx(|| "dup")?));
        Ok(fd)
    }

    /// Remove what is at `name` so a later entry can replace it (tar semantics).
    fn clear(&mut self, dir: &OwnedFd, name: &OsStr, keep_dir: bool) -> Result<bool> {
        match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(err!("cannot stat: {e}")),
            Ok(st) => {
                let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                if is_dir && keep_dir {
                    return Ok(true);
                }
                self.cache = None;
                let how = if is_dir {
                    UnlinkatFlags::RemoveDir
                } else {
                    UnlinkatFlags::NoRemoveDir
                };
                unlinkat(dir.as_fd(), name, how).ctx(|| "cannot replace the existing entry")?;
                Ok(false)
            }
        }
    }

    fn owner(&self, fd: &OwnedFd, uid: u64, gid: u64) -> Result<()> {
        if self.chown {
            fchown(
                fd.as_fd(),
                Some(Uid::from_raw(uid as u32)),
                Some(Gid::from_raw(gid as u32)),
            )
            .ctx(|| "cannot chown")?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, raw: &[u8], entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let header = entry.header();
        let kind = header.entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let mut comps = safe_components(raw)?;
        let mode = header.mode().ctx(|| "bad mode")? & 0o7777;
        let uid = header.uid().ctx(|| "bad uid")?;
        let gid = header.gid().ctx(|| "bad gid")?;
        let mtime = header.mtime().ctx(|| "bad mtime")? as i64;
        let Some(name) = comps.pop() else {
            // "./" itself: the root directory's metadata.
            if kind == EntryType::Directory {
                self.dirs.push(DirMeta {
                    rel: Vec::new(),
                    mode,
                    uid,
                    gid,
                    mtime,
                });
            }
            return Ok(());
        };
        let dir = self.parent(&comps)?;
        let name_b = name.as_bytes();
        if name_b == OPAQUE_MARKER.as_bytes() {
            let path = self.dest.join(comps.iter().collect::<PathBuf>());
            strata_sys::lsetxattr(&path, OsStr::new("trusted.overlay.opaque"), b"y", 0)
                .or_else(|_| {
                    strata_sys::lsetxattr(&path, OsStr::new("user.overlay.opaque"), b"y", 0)
                })
                .ctx(|| "cannot mark the directory opaque")?;
            return Ok(());
        }
        if let Some(hidden) = name_b.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let hidden = OsStr::from_bytes(hidden);
            safe_components(hidden.as_bytes())?;
            self.clear(&dir, hidden, false)?;
            if mknodat(dir.as_fd(), hidden, SFlag::S_IFCHR, Mode::empty(), 0).is_err() {
                // Without CAP_MKNOD keep the OCI form, which strata's union also reads.
                let fd = openat(
                    dir.as_fd(),
                    name.as_os_str(),
                    OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .ctx(|| "cannot create the whiteout")?;
                drop(fd);
            }
            return Ok(());
        }
        let xattrs = self.pax_xattrs(entry);
        let header = entry.header();
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.clear(&dir, name.as_os_str(), false)?;
                let fd = openat(
                    dir.as_fd(),
                    name.as_os_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .ctx(|| "cannot create the file")?;
                // Sparse: a GNU sparse entry or runs of zeros cost no disk space.
                let mut out = SparseWriter::new(File::from(fd));
                copy_data(entry, &mut out)?;
                let fd = OwnedFd::from(out.finish().ctx(|| "cannot write the file")?);
                self.owner(&fd, uid, gid)?;
                fchmod(fd.as_fd(), Mode::from_bits_truncate(mode)).ctx(|| "cannot chmod")?;
                self.set_xattrs(&comps, name.as_os_str(), &xattrs);
                futimens(fd.as_fd(), &ts(mtime), &ts(mtime)).ctx(|| "cannot set times")?;
            }
            EntryType::Directory => {
                if !self.clear(&dir, name.as_os_str(), true)? {
                    mkdirat(
                        dir.as_fd(),
                        name.as_os_str(),
                        Mode::from_bits_truncate(0o700),
                    )
                    .ctx(|| "cannot create the directory")?;
                }
                let mut rel = comps.clone();
                rel.push(name.clone());
                self.set_xattrs(&comps, name.as_os_str(), &xattrs);
                self.dirs.push(DirMeta {
                    rel,
                    mode,
                    uid,
                    gid,
                    mtime,
                });
            }
            EntryType::Symlink => {
                let target = header
                    .link_name_bytes()
                    .ok_or_else(|| err!("symlink without a target"))?
                    .into_owned();
                self.clear(&dir, name.as_os_str(), false)?;
                // The target is stored verbatim: strata never follows it while extracting.
                symlinkat(OsStr::from_bytes(&target), dir.as_fd(), name.as_os_str())
                    .ctx(|| "cannot create the symlink")?;
                if self.chown {
                    fchownat(
                        dir.as_fd(),
                        name.as_os_str(),
                        Some(Uid::from_raw(uid as u32)),
                        Some(Gid::from_raw(gid as u32)),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .ctx(|| "cannot chown the symlink")?;
                }
                utimensat(
                    dir.as_fd(),
                    name.as_os_str(),
                    &ts(mtime),
                    &ts(mtime),
                    UtimensatFlags::NoFollowSymlink,
                )
                .ctx(|| "cannot set times")?;
            }
            EntryType::Link => {
                let target = header
                    .link_name_bytes()
                    .ok_or_else(|| err!("hard link without a target"))?
                    .into_owned();
                let mut tcomps =
                    safe_components(&target).map_err(|e| err!("hard link target {e}"))?;
                let tname = tcomps.pop().ok_or_else(|| err!("hard link to the root"))?;
                let tdir = self
                    .open_dir(&tcomps, false)
                    .map_err(|e| err!("hard link target: {e}"))?;
                let st = fstatat(
                    tdir.as_fd(),
                    tname.as_os_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| err!("hard link target is not in the archive: {e}"))?;
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    return Err(err!("hard link to a directory"));
                }
                self.clear(&dir, name.as_os_str(), false)?;
                linkat(
                    tdir.as_fd(),
                    tname.as_os_str(),
                    dir.as_fd(),
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .ctx(|| "cannot create the hard link")?;
            }
            EntryType::Fifo => {
                self.clear(&dir, name.as_os_str(), false)?;
                mknodat(
                    dir.as_fd(),
                    name.as_os_str(),
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(mode),
                    0,
                )
                .ctx(|| "cannot create the fifo")?;
                let fd = openat(
                    dir.as_fd(),
                    name.as_os_str(),
                    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .ctx(|| "cannot open the fifo")?;
                drop(fd);
                if self.chown {
                    fchownat(
                        dir.as_fd(),
                        name.as_os_str(),
                        Some(Uid::from_raw(uid as u32)),
                        Some(Gid::from_raw(gid as u32)),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .ctx(|| "cannot chown the fifo")?;
                }
            }
            EntryType::Char | EntryType::Block => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                if kind == EntryType::Char && major == 0 && minor == 0 {
                    self.clear(&dir, name.as_os_str(), false)?;
                    mknodat(
                        dir.as_fd(),
                        name.as_os_str(),
                        SFlag::S_IFCHR,
                        Mode::empty(),
                        0,
                    )
                    .ctx(|| "cannot create the whiteout")?;
                } else {
                    if self.skipped_devices.0 == 0 {
                        self.skipped_devices.1 =
                            format!("{} {major}:{minor}", String::from_utf8_lossy(raw));
                    }
                    self.skipped_devices.0 += 1;
                }
            }
            other => {
                tracing::warn!(
                    "skipping tar entry {} of type {other:?}",
                    String::from_utf8_lossy(raw)
                );
            }
        }
        Ok(())
    }

    fn pax_xattrs<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Vec<(OsString, Vec<u8>)> {
        let mut out = Vec::new();
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                    continue;
                };
                // Union-internal xattrs from an image could forge whiteouts or redirects.
                if name.starts_with(b"trusted.overlay.")
                    || name.starts_with(b"user.overlay.")
                    || name.starts_with(b"user.strata.")
                    || name.starts_with(b"trusted.strata.")
                {
                    continue;
                }
                out.push((
                    OsString::from_vec(name.to_vec()),
                    ext.value_bytes().to_vec(),
                ));
            }
        }
        out
    }

    fn set_xattrs(&self, comps: &[OsString], name: &OsStr, xattrs: &[(OsString, Vec<u8>)]) {
        if xattrs.is_empty() {
            return;
        }
        // The parents were just opened without following symlinks and nothing else writes
        // into the staging directory, so the path names the entry we created.
        let path = self.dest.join(comps.iter().collect::<PathBuf>()).join(name);
        for (k, v) in xattrs {
            if let Err(e) = strata_sys::lsetxattr(&path, k, v, 0) {
                tracing::warn!(
                    "cannot set xattr {} on {}: {e}",
                    k.to_string_lossy(),
                    path.display()
                );
            }
        }
    }

    /// Apply directory modes, owners and times last, deepest first: creating entries inside
    /// changes a directory's mtime, and a read-only mode would stop the extraction.
    fn finish_dirs(&mut self) -> Result<()> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.rel.len()));
        for d in dirs {
            let shown = d
                .rel
                .iter()
                .map(|s| s.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let fd = match self.open_dir(&d.rel, false) {
                Ok(fd) => fd,
                // Replaced by a later entry: nothing to apply.
                Err(_) => continue,
            };
            self.owner(&fd, d.uid, d.gid)
                .ctx(|| format!("directory {shown}"))?;
            fchmod(fd.as_fd(), Mode::from_bits_truncate(d.mode))
                .ctx(|| format!("cannot chmod {shown}"))?;
            futimens(fd.as_fd(), &ts(d.mtime), &ts(d.mtime))
                .ctx(|| format!("cannot set times on {shown}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_escapes() {
        assert!(safe_components(b"../etc/passwd").is_err());
        assert!(safe_components(b"a/../../b").is_err());
        assert!(safe_components(b"/etc/passwd").is_err());
        assert_eq!(safe_components(b"./a//b/").ok().map(|v| v.len()), Some(2));
    }
}
