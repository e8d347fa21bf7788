//! The plain OCI form of native layers: the diff of a native layer against the layers below
//! it, with content read through a read-only strata mount of the stack (the expansion a
//! commit used to do at once, now done when a plain form is first needed). It gives the
//! layer its diff_id (cached in its metadata), the tar that save, push and export write,
//! and the materialized copy the kernel overlay driver mounts (docs/commit.md).

use std::io::{self, Write};
use std::path::PathBuf;

use crate::driver::{self, Driver};
use crate::err;
use crate::layer::native::native_of;
use crate::layer::write::{HashingWriter, TarWriter};
use crate::layer::{self, Native, PLAIN_SUFFIX};
use crate::store::{remove_tree, Store};
use crate::util::{write_json, Ctx, Result};

/// A private directory under the store's tmp/, removed on drop.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = remove_tree(&self.0);
    }
}

/// A read-only strata mount with native layer `hex` as its (read-only) upper over the layers
/// it was committed on: the upper's records are read exactly as in the container.
struct View {
    merged: PathBuf,
    _scratch: Scratch,
}

impl View {
    fn open(store: &Store, hex: &str, n: &Native) -> Result<View> {
        layer::check_present(store, &n.below)?;
        let scratch = Scratch(store.staging_dir("plainview")?);
        let (work, merged) = (scratch.0.join("work"), scratch.0.join("merged"));
        for d in [&work, &merged] {
            std::fs::create_dir(d).ctx(|| format!("cannot create {}", d.display()))?;
        }
        let lowers: Vec<PathBuf> = n.below.iter().rev().map(|h| store.layer_dir(h)).collect();
        driver::mount_readonly(Driver::Fuse, &lowers, &store.layer_dir(hex), &work, &merged)?;
        Ok(View {
            merged,
            _scratch: scratch,
        })
    }
}

impl Drop for View {
    fn drop(&mut self) {
        let _ = driver::unmount(&self.merged);
    }
}

/// Write the plain tar of native layer `hex` to `out`.
fn write_plain(store: &Store, hex: &str, n: &Native, out: impl Write) -> Result<()> {
    let view = View::open(store, hex, n)?;
    let mut w = TarWriter::new(out);
    w.layer(&store.layer_dir(hex), Some(&view.merged))?;
    let mut out = w.finish()?;
    out.flush().ctx(|| "cannot write the layer")
}

/// Counts what goes through.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Record a native layer's plain digest and size in its metadata. Without the store lock:
/// every writer writes the same values, atomically.
fn remember(store: &Store, hex: &str, digest: &str, size: u64) -> Result<()> {
    let mut info = layer::info(store, hex)?;
    let Some(n) = info.native.as_mut() else {
        return Ok(());
    };
    if n.plain_diff_id.as_deref() == Some(digest) && n.plain_size == Some(size) {
        return Ok(());
    }
    n.plain_diff_id = Some(digest.to_string());
    n.plain_size = Some(size);
    write_json(&layer::info_path(store, hex), &info)
}

fn plain_hex(d: &str) -> String {
    d.strip_prefix("sha256:").unwrap_or(d).to_string()
}

/// The plain diff_id hex and tar size of a layer: a plain layer's own; a native layer's
/// cached, or computed now (one read of the layer through a mount) and cached.
pub fn diff_of(store: &Store, hex: &str) -> Result<(String, Option<u64>)> {
    let Some(n) = native_of(store, hex) else {
        return Ok((hex.to_string(), None));
    };
    if let (Some(d), Some(s)) = (&n.plain_diff_id, n.plain_size) {
        return Ok((plain_hex(d), Some(s)));
    }
    let mut w = Counting {
        inner: HashingWriter::new(io::sink()),
        n: 0,
    };
    write_plain(store, hex, &n, &mut w)?;
    let size = w.n;
    let (digest, _) = w.inner.finish();
    remember(store, hex, &format!("sha256:{digest}"), size)?;
    Ok((digest, Some(size)))
}

/// The plain tar of a native layer, written into the store's tmp/ (sparse) for a save or
/// push, removed on drop.
#[derive(Debug)]
pub struct PlainTar {
    /// The tar.
    pub path: PathBuf,
    /// Its sha256 hex (the layer's plain diff_id).
    pub hex: String,
    /// Its size.
    pub size: u64,
    _scratch: Scratch,
}

/// Write native layer `hex`'s plain tar to a scratch file; its digest is checked against
/// (or becomes) the cached one, so an image's ids never change between saves.
pub fn plain_tar(store: &Store, hex: &str) -> Result<PlainTar> {
    let n = native_of(store, hex).ok_or_else(|| err!("layer sha256:{hex} is not native"))?;
    let scratch = Scratch(store.staging_dir("plain")?);
    let path = scratch.0.join("layer.tar");
    let f = std::fs::File::create(&path).ctx(|| format!("cannot create {}", path.display()))?;
    let mut w = Counting {
        inner: HashingWriter::new(io::BufWriter::with_capacity(
            1 << 16,
            crate::layer::sparse::SparseWriter::new(f),
        )),
        n: 0,
    };
    write_plain(store, hex, &n, &mut w)?;
    let size = w.n;
    let (digest, bw) = w.inner.finish();
    bw.into_inner()
        .map_err(|e| err!("cannot write {}: {}", path.display(), e.error()))?
        .finish()
        .ctx(|| format!("cannot write {}", path.display()))?;
    match &n.plain_diff_id {
        Some(d) if plain_hex(d) != digest => {
            return Err(err!(
                "the plain form of native layer {hex} no longer matches its recorded diff_id {d}: a layer below it changed; run `strata fsck --image` on the image"
            ))
        }
        Some(_) => {}
        None => remember(store, hex, &format!("sha256:{digest}"), size)?,
    }
    Ok(PlainTar {
        path,
        hex: digest,
        size,
        _scratch: scratch,
    })
}

/// Where a native layer's materialized plain copy lives.
pub fn plain_dir(store: &Store, hex: &str) -> PathBuf {
    store.layers_dir().join(format!("{hex}{PLAIN_SUFFIX}"))
}

/// Make (once) the plain copy of native layer `hex` the kernel overlay driver mounts in its
/// place: its plain tar extracted as any pulled layer is (hold the exclusive lock).
pub fn materialize(store: &Store, hex: &str) -> Result<PathBuf> {
    let dest = plain_dir(store, hex);
    if dest.is_dir() {
        return Ok(dest);
    }
    let tar = plain_tar(store, hex)?;
    let staging = Scratch(store.staging_dir("materialize")?);
    let tree = staging.0.join("tree");
    std::fs::create_dir(&tree).ctx(|| format!("cannot create {}", tree.display()))?;
    let f = std::fs::File::open(&tar.path).ctx(|| format!("cannot read {}", tar.path.display()))?;
    crate::layer::extract::extract_opts(io::BufReader::with_capacity(1 << 16, f), &tree, true)?;
    // Not synced: a copy lost to a power cut is made again (it is only a cache; a crash
    // before the rename leaves a staging directory, never a half copy at this name).
    std::fs::rename(&tree, &dest).ctx(|| format!("cannot move {}", dest.display()))?;
    Ok(dest)
}

/// The directory a driver mounts for layer `hex`: the layer itself, or on the kernel overlay
/// driver a native layer's materialized copy.
pub fn branch_dir(store: &Store, hex: &str, driver: &str) -> PathBuf {
    // Never the raw layer: overlayfs would show strata's records as plain files.
    if driver == Driver::Overlay.name() && native_of(store, hex).is_some() {
        return plain_dir(store, hex);
    }
    store.layer_dir(hex)
}

/// Materialize every native layer of `hexes` for the overlay driver (hold the exclusive lock).
pub fn materialize_all(store: &Store, hexes: &[String]) -> Result<()> {
    for h in hexes {
        if native_of(store, h).is_some() {
            materialize(store, h)?;
        }
    }
    Ok(())
}

/// The union's lower branches of a container, top first, in its driver's form of each
/// layer (see [`ContainerConfig::lower_branches`](crate::spec::ContainerConfig::lower_branches)).
pub fn lower_dirs(store: &Store, cfg: &crate::spec::ContainerConfig) -> Vec<PathBuf> {
    cfg.lower_branches(store, |h| branch_dir(store, h, &cfg.driver))
}
