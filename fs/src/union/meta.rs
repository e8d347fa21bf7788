//! strata's own metadata on upper entries, kept in one xattr per entry.
//!
//! The xattr is `trusted.strata.meta` when the daemon may write trusted xattrs (root),
//! `user.strata.meta` otherwise. Its value is text, one `key value` pair per line:
//!
//! ```text
//! format 2                  record format (absent: format 1)
//! ino 1234                  st_ino the merged file reports (stable across copy-up)
//! redirect /a/b             a renamed directory: its lower contents live at /a/b
//! data +2 usr/lib/x.so      metadata-only copy-up: the bytes are in the layer 2 below this one
//! nlink 3                   link count of a copied-up lower hard link (kept in the index)
//! device real               a character device 0/0 that is a device, not a whiteout
//! ```
//! Every record is read relative to the layer holding it, so a layer means the same
//! wherever it sits in a stack. Format 1's `data L PATH` (written by an upper over its
//! lowers, L counted from the top lower) reads as `data +(L+1) PATH`. Unknown keys are
//! ignored so later versions can add fields. See docs/format.md.

use crate::delta::format::{DeltaMap, Ident};
use crate::union::owner_write::{entry_at, with_owner_write};
use std::ffi::{CStr, OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use strata_sys as sys;

/// Prefixes of xattrs that belong to a union implementation and never show in the mount
/// (fuse-overlayfs hides the same three foreign ones, so layers it wrote read alike).
pub const INTERNAL_XATTR_PREFIXES: [&str; 5] = [
    "trusted.overlay.",
    "user.overlay.",
    "user.fuseoverlayfs.",
    "trusted.strata.",
    "user.strata.",
];

/// Whether an xattr name is internal to strata or overlayfs.
pub fn is_internal_xattr(name: &[u8]) -> bool {
    INTERNAL_XATTR_PREFIXES
        .iter()
        .any(|p| name.starts_with(p.as_bytes()))
}

/// Record format written by this code (`format 2`).
pub const FORMAT: u32 = 2;

/// Parsed contents of the meta xattr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Reported inode number.
    pub ino: Option<u64>,
    /// Lower path of a renamed directory (relative to the branch roots, no leading slash).
    pub redirect: Option<PathBuf>,
    /// Where the data of a metadata-only copy or the base of a delta is: (K, PATH), the
    /// entry at PATH in the layer K >= 1 positions below the layer holding the record.
    pub data: Option<(usize, PathBuf)>,
    /// Link count of a copied-up lower hard link (its upper copy also lives in the index).
    pub nlink: Option<u64>,
    /// Identity of the lower file named by `data` when the copy was made.
    pub ident: Option<Ident>,
    /// Block map of a delta file (with `data` naming the lower file it is a delta of).
    pub delta: Option<DeltaMap>,
    /// A character device 0/0 that is a real device (unmarked, 0/0 is a whiteout).
    pub device: bool,
}

impl Meta {
    /// Serialize to the xattr value.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = format!("format {FORMAT}\n").into_bytes();
        if let Some(ino) = self.ino {
            v.extend_from_slice(format!("ino {ino}\n").as_bytes());
        }
        if let Some(n) = self.nlink {
            v.extend_from_slice(format!("nlink {n}\n").as_bytes());
        }
        if self.device {
            v.extend_from_slice(b"device real\n");
        }
        if let Some(r) = &self.redirect {
            v.extend_from_slice(b"redirect /");
            v.extend_from_slice(r.as_os_str().as_bytes());
            v.push(b'\n');
        }
        if let Some(i) = &self.ident {
            v.extend_from_slice(
                format!("ident {} {} {} {}\n", i.size, i.mtime, i.mtime_nsec, i.ino).as_bytes(),
            );
        }
        if let Some(d) = &self.delta {
            v.extend_from_slice(d.encode().as_bytes());
        }
        if let Some((below, p)) = &self.data {
            v.extend_from_slice(format!("data +{below} ").as_bytes());
            v.extend_from_slice(p.as_os_str().as_bytes());
            v.push(b'\n');
        }
        // The terminator tells a complete record from a cut or foreign one.
        v.extend_from_slice(b"end\n");
        v
    }

    /// Parse an xattr value; malformed lines are an error naming the problem.
    pub fn decode(value: &[u8]) -> Result<Meta, String> {
        let body = value
            .strip_suffix(b"end\n")
            .filter(|b| b.is_empty() || b.ends_with(b"\n"))
            .ok_or_else(|| "record is cut short or not strata's (no end line)".to_string())?;
        let mut m = Meta::default();
        let mut delta_line: Option<String> = None;
        let mut blocks_line: Option<String> = None;
        let mut format = 1;
        let mut data_line: Option<(bool, usize, PathBuf)> = None;
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let (key, rest) = match line.iter().position(|b| *b == b' ') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => (line, &[][..]),
            };
            match key {
                b"format" => {
                    let s = std::str::from_utf8(rest).map_err(|_| "bad format".to_string())?;
                    format = s
                        .parse()
                        .ok()
                        .filter(|f| (1..=FORMAT).contains(f))
                        .ok_or_else(|| format!("unknown record format '{s}'"))?;
                }
                b"ino" => {
                    let s = std::str::from_utf8(rest).map_err(|_| "bad ino".to_string())?;
                    let ino: u64 = s.parse().map_err(|_| format!("bad ino '{s}'"))?;
                    if ino <= 1 {
                        return Err(format!("ino {ino} is reserved"));
                    }
                    m.ino = Some(ino);
                }
                b"nlink" => {
                    let s = std::str::from_utf8(rest).map_err(|_| "bad nlink".to_string())?;
                    m.nlink = Some(s.parse().map_err(|_| format!("bad nlink '{s}'"))?);
                }
                b"ident" => {
                    let s = std::str::from_utf8(rest).map_err(|_| "bad ident".to_string())?;
                    let f: Vec<&str> = s.split_whitespace().collect();
                    let bad = || format!("bad ident '{s}'");
                    let [size, mtime, nsec, ino] = f.as_slice() else {
                        return Err(bad());
                    };
                    m.ident = Some(Ident {
                        size: size.parse().map_err(|_| bad())?,
                        mtime: mtime.parse().map_err(|_| bad())?,
                        mtime_nsec: nsec.parse().map_err(|_| bad())?,
                        ino: ino.parse().map_err(|_| bad())?,
                    });
                }
                b"device" => m.device = true,
                b"delta" => {
                    delta_line = Some(String::from_utf8_lossy(rest).into_owned());
                }
                b"blocks" => {
                    blocks_line = Some(String::from_utf8_lossy(rest).into_owned());
                }
                b"redirect" => {
                    let p = rest.strip_prefix(b"/").unwrap_or(rest);
                    m.redirect = Some(PathBuf::from(OsString::from_vec(p.to_vec())));
                }
                b"data" => {
                    let i = rest
                        .iter()
                        .position(|b| *b == b' ')
                        .ok_or_else(|| "bad data line".to_string())?;
                    let field = &rest[..i];
                    let (relative, digits) = match field.strip_prefix(b"+") {
                        Some(d) => (true, d),
                        None => (false, field),
                    };
                    let n: usize = std::str::from_utf8(digits)
                        .ok()
                        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty())
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| "bad data layer".to_string())?;
                    let p = PathBuf::from(OsString::from_vec(rest[i + 1..].to_vec()));
                    data_line = Some((relative, n, p));
                }
                _ => {}
            }
        }
        if let Some((relative, n, p)) = data_line {
            // Format 1 counted lower branches from the top lower: L is L+1 below the upper.
            let below = if relative || format >= 2 {
                n
            } else {
                n.checked_add(1)
                    .ok_or_else(|| "bad data layer".to_string())?
            };
            if below == 0 {
                return Err("data names the layer holding the record".into());
            }
            m.data = Some((below, p));
        }
        if let Some(d) = delta_line {
            m.delta = Some(DeltaMap::decode(&d, blocks_line.as_deref())?);
            if m.data.is_none() {
                return Err("delta without the lower file it applies to".into());
            }
        }
        Ok(m)
    }
}

/// Reads and writes the meta xattr under the namespace chosen at mount time.
#[derive(Debug, Clone)]
pub struct MetaStore {
    name: OsString,
}

impl MetaStore {
    /// Use `trusted.strata.meta` if `trusted` is set, else `user.strata.meta`.
    pub fn new(trusted: bool) -> MetaStore {
        let name = if trusted {
            "trusted.strata.meta"
        } else {
            "user.strata.meta"
        };
        MetaStore { name: name.into() }
    }

    /// The xattr name in use.
    pub fn xattr_name(&self) -> &OsStr {
        &self.name
    }

    /// Read the meta of the entry at `path` (a /proc/self/fd path); None when absent.
    pub fn read(&self, path: &CStr) -> io::Result<Option<Meta>> {
        self.read_named(path, &self.name)
    }

    /// Read the record kept in xattr `name` of the entry at `path`; None when absent.
    pub(crate) fn read_named(&self, path: &CStr, name: &OsStr) -> io::Result<Option<Meta>> {
        match sys::lgetxattr(path, name) {
            Ok(Some(v)) => Meta::decode(&v).map(Some).map_err(|e| {
                tracing::error!(path = ?path, "corrupt strata metadata xattr: {e}");
                io::Error::from_raw_os_error(libc::EIO)
            }),
            Ok(None) => Ok(None),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Read the meta of an entry in a lower branch, which either kind of daemon may have
    /// written: this mount's name first, then the other namespace.
    pub fn read_lower(&self, path: &CStr) -> io::Result<Option<Meta>> {
        if let Some(m) = self.read(path)? {
            return Ok(Some(m));
        }
        self.read_named(path, self.other_name())
    }

    /// The meta of an open file in a lower branch (either namespace); a corrupt value is an
    /// error naming the problem.
    pub fn try_read_lower_fd(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<Option<Meta>, String> {
        for name in [self.name.as_os_str(), self.other_name()] {
            match sys::fgetxattr(fd, name) {
                Ok(Some(v)) => return Meta::decode(&v).map(Some),
                Ok(None) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(None)
    }

    /// The namespace this mount does not write.
    pub(crate) fn other_name(&self) -> &OsStr {
        OsStr::new(if self.name == "trusted.strata.meta" {
            "user.strata.meta"
        } else {
            "trusted.strata.meta"
        })
    }

    /// Read the meta of an open file; None when absent or unreadable.
    pub fn read_fd(&self, fd: std::os::fd::BorrowedFd<'_>) -> Option<Meta> {
        self.try_read_fd(fd).ok().flatten()
    }

    /// Read the meta of an open file; a corrupt value is an error naming the problem.
    pub fn try_read_fd(&self, fd: std::os::fd::BorrowedFd<'_>) -> Result<Option<Meta>, String> {
        match sys::fgetxattr(fd, &self.name) {
            Ok(Some(v)) => Meta::decode(&v).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Write the meta of an open file (an empty meta removes the xattr).
    pub fn write_fd(&self, fd: std::os::fd::BorrowedFd<'_>, meta: &Meta) -> io::Result<()> {
        // An unprivileged daemon may own a file whose mode forbids it user.* xattrs.
        let entry = || fd.try_clone_to_owned();
        if *meta == Meta::default() {
            return with_owner_write(entry, || match sys::fremovexattr(fd, &self.name) {
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
                r => r,
            });
        }
        with_owner_write(entry, || sys::fsetxattr(fd, &self.name, &meta.encode()))
    }

    /// Write (or with an empty meta, remove) the meta of the entry at `path`.
    pub fn write(&self, path: &CStr, meta: &Meta) -> io::Result<()> {
        let entry = || entry_at(path);
        if *meta == Meta::default() {
            return with_owner_write(entry, || match sys::lremovexattr(path, &self.name) {
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
                r => r,
            });
        }
        with_owner_write(entry, || {
            sys::lsetxattr(path, &self.name, &meta.encode(), 0)
        })
    }
}

/// Join a branch-relative path for display and redirects.
pub fn rel_display(p: &std::path::Path) -> String {
    format!("/{}", p.display())
}

/// The bytes of a relative path.
pub fn path_bytes(p: &std::path::Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let m = Meta {
            ino: Some(42),
            redirect: Some(PathBuf::from("a/b c")),
            data: Some((3, PathBuf::from("x/y z"))),
            nlink: Some(3),
            ident: Some(Ident {
                size: 10,
                mtime: -1,
                mtime_nsec: 5,
                ino: 77,
            }),
            delta: Some(DeltaMap {
                block: 4096,
                limit: 9,
                ranges: vec![(0, 2), (4, 5)],
            }),
            device: true,
        };
        assert_eq!(Meta::decode(&m.encode()).unwrap(), m);
        assert!(Meta::decode(b"ino x\n").is_err());
        assert_eq!(
            Meta::decode(b"future stuff\nend\n").unwrap(),
            Meta::default()
        );
        assert!(Meta::decode(b"delta 1 4096 0\nend\n").is_err());
        assert!(Meta::decode(b"data 0 x\ndelta 9 4096 0\nend\n").is_err());
        assert!(
            Meta::decode(b"ino 5\n").is_err(),
            "a record without its end line"
        );
        assert!(
            Meta::decode(b"ino 1\nend\n").is_err(),
            "the root's inode number"
        );
        assert!(Meta::decode(b"").is_err());
        // Format 1 counted from the top lower; format 2 from the layer holding the record.
        let old = Meta::decode(b"data 0 foo\nend\n").unwrap();
        assert_eq!(old.data, Some((1, PathBuf::from("foo"))));
        let new = Meta::decode(b"format 2\ndata +3 a b\nend\n").unwrap();
        assert_eq!(new.data, Some((3, PathBuf::from("a b"))));
        assert!(Meta::decode(b"format 2\ndata +0 a\nend\n").is_err());
        assert!(Meta::decode(b"format 9\nend\n").is_err());
        assert!(Meta::decode(b"data -1 a\nend\n").is_err());
    }
}
