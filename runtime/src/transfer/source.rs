//! Where an archive's files come from: a directory (OCI layout dir) or a tar file read in place
//! (docker-archive, OCI archive). A tar is indexed once and its members are read by offset, so
//! a multi-gigabyte archive is never copied.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::err;
use crate::util::{Ctx, Result};

/// Read-only access to the files of an archive, by path relative to its root.
pub trait Source {
    /// Open a member for reading; `..` may not leave the root.
    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>>;
    /// Whether a member exists.
    fn exists(&self, path: &str) -> bool;
    /// Read a small member whole (manifests, configs), refusing anything over `limit` bytes.
    fn read_small(&self, path: &str, limit: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open(path)?
            .take(limit + 1)
            .read_to_end(&mut out)
            .ctx(|| format!("cannot read {path} from the archive"))?;
        if out.len() as u64 > limit {
            return Err(err!(
                "{path} in the archive is larger than {limit} bytes: not a valid image archive"
            ));
        }
        Ok(out)
    }
}

/// Normalize an archive path: drop `.` and empty components, apply `..` lexically, refuse
/// paths that leave the root.
pub fn normalize(path: &str) -> Result<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(err!("path {path:?} leaves the archive"));
                }
            }
            c => out.push(c),
        }
    }
    Ok(out.join("/"))
}

/// A directory on disk.
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    /// Read from `root`.
    pub fn new(root: &Path) -> DirSource {
        DirSource {
            root: root.to_path_buf(),
        }
    }
}

impl Source for DirSource {
    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>> {
        let p = self.root.join(normalize(path)?);
        let f = File::open(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                err!(
                    "{path} is missing from {}: the layout is incomplete",
                    self.root.display()
                )
            }
            _ => err!("cannot open {}: {e}", p.display()),
        })?;
        Ok(Box::new(BufReader::with_capacity(1 << 16, f)))
    }
    fn exists(&self, path: &str) -> bool {
        normalize(path)
            .map(|p| self.root.join(p).is_file())
            .unwrap_or(false)
    }
}

enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

/// A tar archive indexed in place.
pub struct TarSource {
    file: File,
    members: HashMap<String, Member>,
}

impl TarSource {
    /// Index the (uncompressed) tar at `path`.
    pub fn open(path: &Path) -> Result<TarSource> {
        let f = File::open(path).ctx(|| format!("cannot open {}", path.display()))?;
        let mut members = HashMap::new();
        {
            let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 16, &f));
            let entries = archive
                .entries()
                .ctx(|| format!("{} is not a tar archive", path.display()))?;
            for entry in entries {
                // The tar crate's messages quote raw member names: escape them.
                let entry = entry.map_err(|e| {
                    crate::err!(
                        "{} is not a valid tar archive (truncated?): {}",
                        path.display(),
                        e.to_string().escape_debug()
                    )
                })?;
                let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                let Ok(name) = normalize(&name) else {
                    // A member outside the root can never be named by a manifest: ignore it.
                    continue;
                };
                let kind = entry.header().entry_type();
                let link = || {
                    entry
                        .link_name_bytes()
                        .map(|l| String::from_utf8_lossy(&l).into_owned())
                };
                match kind {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        members.insert(
                            name,
                            Member::File {
                                offset: entry.raw_file_position(),
                                size: entry.size(),
                            },
                        );
                    }
                    tar::EntryType::Symlink => {
                        if let Some(target) = link() {
                            // Relative to the link's directory.
                            let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                            let joined = if target.starts_with('/') {
                                target
                            } else {
                                format!("{dir}/{target}")
                            };
                            if let Ok(t) = normalize(&joined) {
                                members.insert(name, Member::Link(t));
                            }
                        }
                    }
                    tar::EntryType::Link => {
                        if let Some(Ok(t)) = link().map(|t| normalize(&t)) {
                            members.insert(name, Member::Link(t));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(TarSource { file: f, members })
    }

    fn resolve(&self, path: &str) -> Result<(u64, u64)> {
        let mut p = normalize(path)?;
        for _ in 0..16 {
            match self.members.get(&p) {
                Some(Member::File { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Link(t)) => p = t.clone(),
                None => {
                    return Err(err!(
                        "{path} is missing from the archive: it is incomplete or corrupt"
                    ))
                }
            }
        }
        Err(err!("{path} in the archive is a symlink loop"))
    }
}

/// A window of a file read with pread.
struct Section<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Section<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the archive is truncated",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Source for TarSource {
    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>> {
        let (offset, size) = self.resolve(path)?;
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            Section {
                file: &self.file,
                pos: offset,
                end: offset + size,
            },
        )))
    }
    fn exists(&self, path: &str) -> bool {
        self.resolve(path).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        assert_eq!(normalize("./a//b/../c").ok().as_deref(), Some("a/c"));
        assert!(normalize("../x").is_err());
        assert!(normalize("a/../../x").is_err());
    }
}
