//! Writing trees as tars: a container's upper directory as an OCI layer (whiteouts as
//! `.wh.` files, internal xattrs dropped, entries the union marked for expansion read whole
//! through the merged view), and a merged tree as a plain filesystem tar (export).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::err;
use crate::layer::extract::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::util::{Ctx, Result};

/// xattr prefixes that belong to a union implementation (never written to a layer).
pub const INTERNAL_XATTR_PREFIXES: [&str; 5] = [
    "trusted.overlay.",
    "user.overlay.",
    "user.fuseoverlayfs.",
    "trusted.strata.",
    "user.strata.",
];

/// strata's meta xattr names (root and rootless daemons).
pub const META_XATTRS: [&str; 2] = ["trusted.strata.meta", "user.strata.meta"];

fn is_internal(name: &[u8]) -> bool {
    INTERNAL_XATTR_PREFIXES
        .iter()
        .any(|p| name.starts_with(p.as_bytes()))
}

/// The parsed parts of strata's meta xattr a commit cares about.
#[derive(Debug, Default, Clone)]
pub struct Meta {
    /// The xattr exists at all.
    pub present: bool,
    /// `redirect /PATH`: a renamed directory.
    pub redirect: Option<String>,
    /// `data L PATH`: a metadata-only copy.
    pub data: bool,
    /// `device real`: a character device 0/0 that is not a whiteout.
    pub device: bool,
}

/// Read strata's meta xattr on `path` (either namespace).
pub fn read_meta(path: &Path) -> Meta {
    for n in META_XATTRS {
        if let Ok(Some(v)) = strata_sys::lgetxattr(path, OsStr::new(n)) {
            let mut m = Meta {
                present: true,
                ..Meta::default()
            };
            for line in v.split(|b| *b == b'\n') {
                if let Some(r) = line.strip_prefix(b"redirect ") {
                    m.redirect = Some(String::from_utf8_lossy(r).into_owned());
                } else if line.starts_with(b"data ") {
                    m.data = true;
                } else if line.starts_with(b"device ") {
                    m.device = true;
                }
            }
            return m;
        }
    }
    Meta::default()
}

/// True if the directory at `path` is marked opaque by an overlay xattr.
pub fn opaque_xattr(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|n| matches!(strata_sys::lgetxattr(path, OsStr::new(n)), Ok(Some(v)) if v == b"y"))
}

/// True for an overlayfs whiteout (character device 0/0) at `path`, stat'ed as `m`; a
/// real 0/0 device strata stored carries `device` in its meta xattr (docs/format.md).
pub fn is_char_whiteout(path: &Path, m: &Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0 && !read_meta(path).device
}

/// Sorted entries of a directory.
pub fn sorted_names(dir: &Path) -> Result<Vec<OsString>> {
    let mut names: Vec<OsString> = std::fs::read_dir(dir)
        .ctx(|| format!("cannot list {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .ctx(|| format!("cannot list {}", dir.display()))?;
    names.sort();
    Ok(names)
}

/// True for the empty `dev`, `proc` and `sys` directories the runtime creates at the top of
/// an upper as mount points: they are not the container's changes (docker hides them too).
pub fn is_runtime_mountpoint(rel: &Path, path: &Path, m: &Metadata) -> bool {
    let top = rel.parent().is_some_and(|p| p.as_os_str().is_empty());
    top && m.is_dir()
        && matches!(rel.to_str(), Some("dev" | "proc" | "sys"))
        && std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

/// True for `.wh..wh.NAME` entries other than the opaque marker (strata's hard-link index
/// `.wh..wh.index`, aufs's `.wh..wh.plnk`): the union's private data, never a change.
pub fn is_union_private(name: &[u8]) -> bool {
    name.starts_with(b".wh..wh.") && name != OPAQUE_MARKER.as_bytes()
}

/// A tar being written, with hard-link tracking.
pub struct TarWriter<W: Write> {
    b: tar::Builder<W>,
    links: HashMap<(u64, u64), PathBuf>,
    /// Entries written.
    pub entries: u64,
}

fn base_header(m: &Metadata, kind: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(m.mode() & 0o7777);
    h.set_uid(u64::from(m.uid()));
    h.set_gid(u64::from(m.gid()));
    h.set_mtime(m.mtime().max(0) as u64);
    h.set_size(0);
    h
}

fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    // "LEN key=value\n" where LEN counts the whole record, its own digits included.
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = len.to_string().len() + rest;
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

impl<W: Write> TarWriter<W> {
    /// Start a tar on `out`.
    pub fn new(out: W) -> Self {
        let mut b = tar::Builder::new(out);
        b.mode(tar::HeaderMode::Complete);
        TarWriter {
            b,
            links: HashMap::new(),
            entries: 0,
        }
    }

    /// Finish the archive and return the writer.
    pub fn finish(self) -> Result<W> {
        self.b.into_inner().ctx(|| "cannot finish the tar")
    }

    fn xattrs(&mut self, src: &Path) -> Result<()> {
        let mut data = Vec::new();
        for name in strata_sys::llistxattr(src).unwrap_or_default() {
            if is_internal(&name) {
                continue;
            }
            if let Ok(Some(v)) = strata_sys::lgetxattr(src, OsStr::from_bytes(&name)) {
                let mut key = b"SCHILY.xattr.".to_vec();
                key.extend_from_slice(&name);
                data.extend(pax_record(&key, &v));
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_path("PaxHeaders/xattrs")
            .ctx(|| "cannot write a pax header")?;
        h.set_cksum();
        self.b
            .append(&h, data.as_slice())
            .ctx(|| "cannot write the tar")
    }

    /// An empty regular file (whiteouts and opaque markers).
    pub fn marker(&mut self, rel: &Path, like: &Metadata) -> Result<()> {
        let mut h = base_header(like, EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        self.entries += 1;
        self.b
            .append_data(&mut h, rel, io::empty())
            .ctx(|| format!("cannot write {} to the tar", rel.display()))
    }

    /// Add the entry at `src` (lstat'ed as `m`) under the name `rel`. Regular files take
    /// their bytes from `content` when given (a path in the merged view), else from `src`.
    pub fn entry(
        &mut self,
        rel: &Path,
        src: &Path,
        m: &Metadata,
        content: Option<&Path>,
    ) -> Result<()> {
        let ft = m.file_type();
        let shown = || rel.display().to_string();
        if ft.is_socket() {
            return Ok(());
        }
        if !ft.is_dir() && m.nlink() > 1 {
            if let Some(first) = self.links.get(&(m.dev(), m.ino())).cloned() {
                let mut h = base_header(m, EntryType::Link);
                self.entries += 1;
                return self
                    .b
                    .append_link(&mut h, rel, &first)
                    .ctx(|| format!("cannot write the hard link {}", shown()));
            }
            self.links.insert((m.dev(), m.ino()), rel.to_path_buf());
        }
        self.xattrs(src)?;
        self.entries += 1;
        if ft.is_dir() {
            let mut h = base_header(m, EntryType::Directory);
            let mut name = rel.as_os_str().to_owned();
            name.push("/");
            return self
                .b
                .append_data(&mut h, Path::new(&name), io::empty())
                .ctx(|| format!("cannot write {} to the tar", shown()));
        }
        if ft.is_symlink() {
            let target =
                std::fs::read_link(src).ctx(|| format!("cannot read the symlink {}", shown()))?;
            let mut h = base_header(m, EntryType::Symlink);
            return self
                .b
                .append_link(&mut h, rel, &target)
                .ctx(|| format!("cannot write the symlink {}", shown()));
        }
        if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_fifo() {
                EntryType::Fifo
            } else if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            };
            let mut h = base_header(m, kind);
            if kind != EntryType::Fifo {
                let dev = m.rdev();
                h.set_device_major(nix::sys::stat::major(dev) as u32)
                    .ctx(|| "device number")?;
                h.set_device_minor(nix::sys::stat::minor(dev) as u32)
                    .ctx(|| "device number")?;
            }
            return self
                .b
                .append_data(&mut h, rel, io::empty())
                .ctx(|| format!("cannot write {} to the tar", shown()));
        }
        // A regular file.
        let from = content.unwrap_or(src);
        let f = File::open(from).ctx(|| format!("cannot read {}", from.display()))?;
        let len = f
            .metadata()
            .ctx(|| format!("cannot stat {}", from.display()))?
            .len();
        let mut h = base_header(m, EntryType::Regular);
        h.set_size(len);
        let mut exact = ExactReader {
            inner: f,
            left: len,
        };
        self.b
            .append_data(&mut h, rel, &mut exact)
            .ctx(|| format!("cannot write {} to the tar", shown()))?;
        if exact.left != 0 {
            return Err(err!(
                "{} shrank while it was being read: stop the container and retry",
                shown()
            ));
        }
        Ok(())
    }

    /// Add everything below `dir` (a merged view), named below `rel`.
    pub fn tree(&mut self, rel: &Path, dir: &Path) -> Result<()> {
        for name in sorted_names(dir)? {
            let src = dir.join(&name);
            let r = rel.join(&name);
            let m =
                std::fs::symlink_metadata(&src).ctx(|| format!("cannot stat {}", src.display()))?;
            self.entry(&r, &src, &m, None)?;
            if m.is_dir() {
                self.tree(&r, &src)?;
            }
        }
        Ok(())
    }

    /// Write the upper directory `upper` as an OCI layer. `merged` is the container's
    /// merged view, needed for entries strata's union marked (meta xattr).
    pub fn layer(&mut self, upper: &Path, merged: Option<&Path>) -> Result<()> {
        self.upper_dir(Path::new(""), upper, merged)
    }

    fn upper_dir(&mut self, rel: &Path, dir: &Path, merged: Option<&Path>) -> Result<()> {
        for name in sorted_names(dir)? {
            let src = dir.join(&name);
            let r = rel.join(&name);
            let m =
                std::fs::symlink_metadata(&src).ctx(|| format!("cannot stat {}", src.display()))?;
            let nb = name.as_bytes();
            if nb == OPAQUE_MARKER.as_bytes() {
                // Written right after its directory (below), once.
                continue;
            }
            if is_union_private(nb) {
                // The union's own (the hard-link index): its names are the upper's links.
                continue;
            }
            if nb.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                self.marker(&r, &m)?;
                continue;
            }
            if is_char_whiteout(&src, &m) {
                let mut wh = OsString::from(WHITEOUT_PREFIX);
                wh.push(&name);
                self.marker(&rel.join(wh), &m)?;
                continue;
            }
            if is_runtime_mountpoint(&r, &src, &m) {
                continue;
            }
            let meta = read_meta(&src);
            if m.is_dir() {
                self.entry(&r, &src, &m, None)?;
                let opaque = opaque_xattr(&src)
                    || std::fs::symlink_metadata(src.join(OPAQUE_MARKER)).is_ok()
                    || meta.redirect.is_some();
                if opaque {
                    self.marker(&r.join(OPAQUE_MARKER), &m)?;
                }
                if meta.redirect.is_some() {
                    let view = merged.ok_or_else(|| {
                        err!(
                            "{} is a renamed directory and needs the container's merged view",
                            r.display()
                        )
                    })?;
                    self.tree(&r, &view.join(&r))?;
                } else {
                    self.upper_dir(&r, &src, merged)?;
                }
                continue;
            }
            let content = if m.is_file() && meta.present {
                let view = merged.ok_or_else(|| {
                    err!(
                        "{} needs the container's merged view to be read whole",
                        r.display()
                    )
                })?;
                Some(view.join(&r))
            } else {
                None
            };
            self.entry(&r, &src, &m, content.as_deref())?;
        }
        Ok(())
    }
}

struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// A writer that hashes (sha256) what goes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: Write> HashingWriter<W> {
    /// Wrap `inner`.
    pub fn new(inner: W) -> Self {
        use sha2::Digest;
        HashingWriter {
            inner,
            hasher: sha2::Sha256::new(),
        }
    }
    /// The hex digest and the writer.
    pub fn finish(self) -> (String, W) {
        use sha2::Digest;
        (crate::util::hex(&self.hasher.finalize()), self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_themselves() {
        let r = pax_record(b"SCHILY.xattr.user.a", b"1");
        let s = String::from_utf8(r.clone()).unwrap();
        let (len, _) = s.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), r.len());
        let r = pax_record(b"k", &[b'v'; 95]);
        let s = String::from_utf8(r.clone()).unwrap();
        assert_eq!(
            s.split_once(' ').unwrap().0.parse::<usize>().unwrap(),
            r.len()
        );
    }
}
