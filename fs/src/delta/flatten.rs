//! Flattening long delta chains: a file whose bytes come from more than
//! [`MAX_CHAIN_FILES`] files (a delta over a delta over ... over a plain file, as layers
//! stack up) is made whole, so reads never get slower per layer without bound.
//!
//! Lower layers are never written, so what can be flattened is a delta in the upper: a
//! mount queues such a delta for the background compaction worker when it opens it (never
//! inside the request), and [`Union::flatten_chains`] makes every deep delta of an upper
//! whole at once, for `strata compact --chains` and for commit, so that a committed layer
//! never carries a chain deeper than the bound.

use crate::delta::file::DeltaFile;
use crate::types::Layer;
use crate::union::attr::fmt;
use crate::union::fs::Union;
use nix::dir::{Dir, Type};
use nix::fcntl::OFlag;
use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The most files a merged file's bytes may come from before its upper delta is
/// flattened: a delta over five more deltas over a plain file (six files) still reads
/// through the chain; one more level and the top delta is made whole.
pub const MAX_CHAIN_FILES: usize = 6;

/// Directories visited by one [`Union::flatten_chains`] walk at most (a bound, not a
/// limit any real layer reaches).
const MAX_DIRS: usize = 1 << 20;

/// What a flattening pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlattenReport {
    /// Deltas looked at.
    pub deltas: u64,
    /// Of those, made whole because their chain was too deep.
    pub flattened: u64,
}

impl Union {
    /// Queue delta `d` for background compaction when its chain is deeper than the bound
    /// (called when a mount opens the delta; without a worker nothing happens here).
    pub(crate) fn flatten_if_deep(&self, d: &DeltaFile) {
        if d.chain_depth() > MAX_CHAIN_FILES && !d.is_whole() {
            tracing::debug!(file = %d.path.display(), depth = d.chain_depth(), "delta chain too deep: flattening in the background");
            self.queue_compaction(d);
        }
    }

    /// Make every delta of the upper whose chain is deeper than [`MAX_CHAIN_FILES`] a
    /// whole file now (offline: no mount needed). The merged view does not change.
    pub fn flatten_chains(&self) -> io::Result<FlattenReport> {
        let mut report = FlattenReport::default();
        if self.upper.is_none() {
            return Ok(report);
        }
        let mut stack = vec![PathBuf::new()];
        let mut visited = 0usize;
        while let Some(dir) = stack.pop() {
            visited += 1;
            if visited > MAX_DIRS {
                return Err(io::Error::other("too many directories in the upper"));
            }
            for (name, is_dir) in self.upper_entries(&dir)? {
                let path = dir.join(&name);
                if is_dir {
                    stack.push(path);
                    continue;
                }
                self.flatten_file(&path, &mut report)?;
            }
        }
        Ok(report)
    }

    /// Flatten the upper regular file at merged path `path` if it is a deep delta.
    fn flatten_file(&self, path: &Path, report: &mut FlattenReport) -> io::Result<()> {
        let r = match self.resolve_path(path) {
            Ok(r) => r,
            // Hidden or reserved names (whiteouts, markers) do not resolve.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        };
        if !r.place.upper || !r.place.delta || fmt(&r.st) != libc::S_IFREG {
            return Ok(());
        }
        report.deltas += 1;
        let Some(d) = self.delta_file(r.ino, path)? else {
            return Ok(());
        };
        if d.chain_depth() > MAX_CHAIN_FILES && self.compact_delta(&d, None)? {
            report.flattened += 1;
        }
        Ok(())
    }

    /// Names in upper directory `dir` (not "." or ".."), with whether each is a directory.
    fn upper_entries(&self, dir: &Path) -> io::Result<Vec<(std::ffi::OsString, bool)>> {
        let fd = self.open_to_read(Layer::Upper, dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
        let mut d = Dir::from_fd(fd)?;
        let dfd = d.as_fd().try_clone_to_owned()?;
        let mut out = Vec::new();
        for ent in d.iter() {
            let ent = ent?;
            let name = OsStr::from_bytes(ent.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let is_dir = match ent.file_type() {
                Some(Type::Directory) => true,
                Some(_) => false,
                None => fmt(&crate::union::branch::stat_at(dfd.as_fd(), name)?) == libc::S_IFDIR,
            };
            out.push((name.to_os_string(), is_dir));
        }
        Ok(out)
    }
}

/// Flatten the deep delta chains of an upper that is not mounted right now (`strata
/// compact --chains`, commit): `lowers` top first, as it was mounted. Refused while a
/// daemon serves that upper (its control socket answers), since two writers of one delta
/// record would lose blocks.
pub fn flatten_upper(
    upper: &Path,
    work: &Path,
    lowers: &[PathBuf],
) -> Result<FlattenReport, String> {
    let sock = work.join("strata.sock");
    if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
        return Err(format!(
            "{} is mounted right now (its daemon answers on {}): unmount it first, or run `strata compact FILE` inside the mount",
            upper.display(),
            sock.display()
        ));
    }
    let opts = crate::MountOptions {
        lowerdirs: lowers.to_vec(),
        upperdir: Some(upper.to_path_buf()),
        workdir: Some(work.to_path_buf()),
        ..Default::default()
    };
    let union = crate::prepare(opts).map_err(|e| e.to_string())?;
    union
        .flatten_chains()
        .map_err(|e| format!("flattening the delta chains of {}: {e}", upper.display()))
}
