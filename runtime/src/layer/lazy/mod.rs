//! Lazily pulled layers in the store. Such a layer is an ordinary layer directory whose
//! regular files are placeholders (right size, no data, the `trusted.strata.lazy` xattr),
//! built from the eStargz TOC; beside it `<hex>.lazy.json` says where the blob is and
//! `<hex>.toc.json` holds the verified TOC. The filler (transfer::lazy) writes a file's
//! verified data and drops its xattr on first open; completing the layer (a full, diff_id
//! verified download) fills the rest, adds the kept tar and removes both records.

pub mod complete;
pub mod skeleton;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::err;
use crate::store::Store;
use crate::util::{Ctx, Result};

use super::toc::{Toc, TocEntry};

/// The xattr marking a placeholder (root's store; `user.` in a rootless one). The union hides
/// both, and extraction drops them from images, so an image cannot forge one.
pub const PENDING: [&str; 2] = ["trusted.strata.lazy", "user.strata.lazy"];

/// Where a lazy layer's blob is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LazyState {
    /// Registry reference of the image (HOST/REPO[:TAG]).
    pub reference: String,
    /// Plain http.
    pub insecure: bool,
    /// Blob digest.
    pub digest: String,
    /// Blob size.
    pub size: u64,
    /// "sha256:<hex>" of the TOC (from the manifest's annotation).
    pub toc_digest: String,
    /// Offset of the TOC in the blob (the end of the file data).
    pub toc_offset: u64,
}

/// `<hex>.lazy.json`.
pub fn state_path(store: &Store, hex: &str) -> PathBuf {
    store.layers_dir().join(format!("{hex}.lazy.json"))
}
/// `<hex>.toc.json`.
pub fn toc_path(store: &Store, hex: &str) -> PathBuf {
    store.layers_dir().join(format!("{hex}.toc.json"))
}

/// Whether layer `hex` is lazily pulled and not complete yet.
pub fn is_lazy(store: &Store, hex: &str) -> bool {
    state_path(store, hex).is_file() && store.layer_dir(hex).is_dir()
}

/// Remove a lazy layer's records (its tree is gone: `gc`).
pub fn forget(store: &Store, hex: &str) -> Result<()> {
    for p in [
        state_path(store, hex),
        toc_path(store, hex),
        store.layers_dir().join(format!("{hex}.lazy.lock")),
    ] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(err!("cannot remove {}: {e}", p.display()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether any of `hexes` is lazy.
pub fn any_lazy(store: &Store, hexes: &[String]) -> bool {
    hexes.iter().any(|h| is_lazy(store, h))
}

/// A lazy layer's records, the TOC checked against its digest again (it is on disk).
pub fn read(store: &Store, hex: &str) -> Result<(LazyState, Toc)> {
    let sp = state_path(store, hex);
    let state: LazyState = serde_json::from_slice(
        &std::fs::read(&sp).ctx(|| format!("cannot read {}", sp.display()))?,
    )
    .map_err(|e| {
        err!(
            "{} is corrupt ({e}): run `strata pull` of the image again",
            sp.display()
        )
    })?;
    let tp = toc_path(store, hex);
    let bytes = std::fs::read(&tp).ctx(|| format!("cannot read {}", tp.display()))?;
    let toc = verify_toc(&bytes, &state.toc_digest)?;
    Ok((state, toc))
}

/// Parse a TOC whose bytes must have digest `digest`.
pub fn verify_toc(bytes: &[u8], digest: &str) -> Result<Toc> {
    let got = format!("sha256:{}", crate::util::hex(&sha2::Sha256::digest(bytes)));
    if got != digest {
        return Err(err!(
            "the eStargz TOC has digest {got}, not the {digest} the manifest gives: refusing it"
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| err!("the eStargz TOC is not valid ({e})"))
}

/// A TOC name as a path inside the layer ("./a/b/" -> "a/b").
pub fn normalize(name: &str) -> PathBuf {
    Path::new(name)
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect()
}

/// One chunk of a file: where its gzip member is, where it goes, its digest.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Offset of the gzip member in the blob.
    pub offset: u64,
    /// End of the member (the next member's offset, or the TOC's).
    pub end: u64,
    /// Offset in the file.
    pub file_offset: u64,
    /// Uncompressed length.
    pub len: u64,
    /// "sha256:<hex>".
    pub digest: String,
}

/// A regular file with data: its size, mtime and chunks.
#[derive(Debug, Clone)]
pub struct FileChunks {
    /// Path in the layer.
    pub rel: PathBuf,
    /// Size.
    pub size: u64,
    /// Chunks in file order.
    pub chunks: Vec<Chunk>,
}

/// Every regular file with data, by path (hard links too), in blob order.
pub fn files(toc: &Toc, toc_offset: u64) -> (Vec<FileChunks>, HashMap<PathBuf, usize>) {
    let mut offsets: Vec<u64> = toc
        .entries
        .iter()
        .filter(|e| e.offset > 0)
        .map(|e| e.offset as u64)
        .collect();
    offsets.push(toc_offset);
    offsets.sort_unstable();
    offsets.dedup();
    let end_of = |off: u64| {
        let i = offsets.partition_point(|o| *o <= off);
        offsets.get(i).copied().unwrap_or(toc_offset)
    };
    let mut out: Vec<FileChunks> = Vec::new();
    let mut by_name: HashMap<PathBuf, usize> = HashMap::new();
    for e in &toc.entries {
        match e.kind.as_str() {
            "reg" if e.size > 0 => {
                let rel = normalize(&e.name);
                by_name.insert(rel.clone(), out.len());
                out.push(FileChunks {
                    rel,
                    size: e.size,
                    chunks: vec![chunk(e, e.size, end_of(e.offset as u64))],
                });
            }
            "chunk" => {
                if let Some(f) = by_name
                    .get(&normalize(&e.name))
                    .and_then(|i| out.get_mut(*i))
                {
                    let c = chunk(e, f.size, end_of(e.offset as u64));
                    f.chunks.push(c);
                }
            }
            _ => {}
        }
    }
    for e in toc.entries.iter().filter(|e| e.kind == "hardlink") {
        if let Some(i) = by_name.get(&normalize(&e.link_name)).copied() {
            by_name.insert(normalize(&e.name), i);
        }
    }
    (out, by_name)
}

fn chunk(e: &TocEntry, size: u64, end: u64) -> Chunk {
    let file_offset = e.chunk_offset.max(0) as u64;
    let len = if e.chunk_size > 0 {
        e.chunk_size as u64
    } else {
        size.saturating_sub(file_offset)
    };
    Chunk {
        offset: e.offset.max(0) as u64,
        end,
        file_offset,
        len,
        digest: e.chunk_digest.clone(),
    }
}

/// Hold the layer's fill lock (between the daemon's filler and a completing pull).
pub fn lock(store: &Store, hex: &str) -> Result<Flock<File>> {
    let p = store.layers_dir().join(format!("{hex}.lazy.lock"));
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .ctx(|| format!("cannot open {}", p.display()))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| err!("cannot lock {}: {e}", p.display()))
}

/// Whether the open file is still a placeholder.
pub fn is_pending(f: &File) -> bool {
    PENDING.iter().any(|n| {
        strata_sys::fgetxattr(f.as_fd(), OsStr::new(n))
            .ok()
            .flatten()
            .is_some()
    })
}

/// Mark the open file a placeholder.
pub fn mark_pending(f: &File) -> std::io::Result<()> {
    strata_sys::fsetxattr(f.as_fd(), OsStr::new(PENDING[0]), b"1")
        .or_else(|_| strata_sys::fsetxattr(f.as_fd(), OsStr::new(PENDING[1]), b"1"))
}

/// Make the placeholder `f` a real file: `write` puts its (verified) data in, it reaches
/// the disk, the times are the image's again (writing changed them), then the mark goes.
pub fn fill_with(
    f: &File,
    write: impl FnOnce(&File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let st = nix::sys::stat::fstat(f.as_fd())?;
    write(f)?;
    f.sync_data()?;
    let at = nix::sys::time::TimeSpec::new(st.st_atime, st.st_atime_nsec);
    let mt = nix::sys::time::TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    nix::sys::stat::futimens(f.as_fd(), &at, &mt)?;
    for n in PENDING {
        match strata_sys::fremovexattr(f.as_fd(), OsStr::new(n)) {
            Err(e) if e.raw_os_error() != Some(libc::ENODATA) => return Err(e),
            _ => {}
        }
    }
    Ok(())
}
