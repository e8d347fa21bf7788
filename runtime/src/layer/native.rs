//! Native commit: a fuse container's upper becomes the image's new layer as it is (a sparse,
//! reflinking copy with every strata record kept), instead of being expanded into whole
//! files and re-tarred. The container keeps its own upper (docker semantics). See
//! docs/commit.md for the format, ids and crash safety.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::layer::write::{is_runtime_mountpoint, META_XATTRS};
use crate::layer::{self, LayerInfo, Native};
use crate::spec::{ContainerConfig, Paths};
use crate::store::{remove_tree, Store};
use crate::util::{now_secs, random_id, write_json, Ctx, Result};
use crate::{driver, err};

/// A container's upper copied into the staging area, not yet a layer of the store.
pub struct NativeStaged {
    dir: PathBuf,
    below: Vec<String>,
    /// What the copy did (entries, bytes, fsyncs), for the log.
    pub copied: crate::layer::treecopy::Copied,
}

impl NativeStaged {
    fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }
}

impl Drop for NativeStaged {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
    }
}

/// Uppers with at most this many entries are synced file by file, larger ones by one syncfs.
const SYNC_EACH: u64 = 64;

/// What the walk of a keepable upper found.
struct Keepable {
    /// Entries in the upper.
    entries: u64,
    /// Of those, block deltas (the only records a chain flattening may have to rewrite).
    deltas: u64,
}

/// Why a container's upper cannot be kept as it is (the commit then expands it, as before).
/// What it holds when it can.
fn keepable(upper: &Path, image_layers: usize) -> std::result::Result<Keepable, String> {
    // A record naming a branch below the image's layers points into the container's init
    // layer, which is not part of the image.
    let mut stack = vec![upper.to_path_buf()];
    let mut seen = 0u64;
    let mut deltas = 0u64;
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in rd.flatten() {
            seen += 1;
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p.clone());
            }
            for n in META_XATTRS {
                let Ok(Some(v)) = strata_sys::lgetxattr(&p, OsStr::new(n)) else {
                    continue;
                };
                let m = strata_fs::union::meta::Meta::decode(&v)
                    .map_err(|e| format!("{}: corrupt {n}: {e}", p.display()))?;
                deltas += u64::from(m.delta.is_some());
                if let Some((l, _)) = &m.data {
                    if *l > image_layers {
                        return Err(format!(
                            "{} takes its data from the container's init layer",
                            p.display()
                        ));
                    }
                }
            }
        }
    }
    Ok(Keepable {
        entries: seen,
        deltas,
    })
}

/// Copy container `cfg`'s upper into the staging area as a native layer; None (with the
/// reason logged) when it must be expanded instead: not the fuse driver, or a record that
/// means nothing outside the container.
pub fn stage(store: &Store, cfg: &ContainerConfig) -> Result<Option<NativeStaged>> {
    if cfg.driver != driver::Driver::Fuse.name() {
        return Ok(None);
    }
    let paths = Paths::new(store, &cfg.id);
    let upper = paths.upper();
    let found = match keepable(&upper, cfg.layers.len()) {
        Ok(k) => k,
        Err(why) => {
            tracing::info!("commit expands the upper: {why}");
            return Ok(None);
        }
    };
    let t = Instant::now();
    if driver::is_mounted(&paths.merged()) {
        // A live container: what its processes wrote may still sit in the kernel's page
        // cache of the FUSE mount (writeback); syncfs sends it to the daemon, which writes
        // it into the upper, before the copy reads the upper.
        let f = std::fs::File::open(paths.merged())
            .ctx(|| format!("cannot open {}", paths.merged().display()))?;
        nix::unistd::syncfs(&f)
            .map_err(|e| err!("cannot sync {}: {e}", paths.merged().display()))?;
    }
    sweep_stale(store);
    let dir = store.staging_dir(&format!("native-{}", std::process::id()))?;
    let mut staged = NativeStaged {
        dir,
        below: cfg.layers.clone(),
        copied: Default::default(),
    };
    let keep = |rel: &Path, p: &Path, m: &std::fs::Metadata| !is_runtime_mountpoint(rel, p, m);
    // Durability before the layer is named (docs/commit.md): a small upper fsyncs each file
    // with content and each directory as it is copied; past SYNC_EACH entries one syncfs of
    // the store's filesystem is cheaper than that many fsyncs.
    let each = found.entries <= SYNC_EACH;
    let copied = crate::layer::treecopy::copy_tree(&upper, &staged.tree(), each, &keep)?;
    // The branches the upper was mounted over (a fuse container: the raw layers).
    let lowers = cfg.lower_branches(store, |h| store.layer_dir(h));
    // A chain crosses each layer at most once: over fewer layers than the bound, none can
    // be too deep and the walk is skipped.
    if found.deltas > 0 && lowers.len() + 1 > strata_fs::delta::flatten::MAX_CHAIN_FILES {
        // The new layer never carries a delta chain past the bound (docs/format.md, "Chains
        // stay short"): deep ones are made whole in the copy (each synced before its record
        // changes), the container's own upper is left as it is.
        let work = staged.dir.join("work");
        std::fs::create_dir(&work).ctx(|| format!("cannot create {}", work.display()))?;
        let r = strata_fs::delta::flatten::flatten_upper(&staged.tree(), &work, &lowers)
            .map_err(|e| err!("commit: {e}"))?;
        if r.flattened > 0 {
            tracing::info!(
                "commit flattened {} delta chain(s) deeper than {} files",
                r.flattened,
                strata_fs::delta::flatten::MAX_CHAIN_FILES
            );
        }
    }
    if !each {
        let f = std::fs::File::open(&staged.dir)
            .ctx(|| format!("cannot open {}", staged.dir.display()))?;
        nix::unistd::syncfs(&f).map_err(|e| err!("cannot sync the store: {e}"))?;
    }
    tracing::debug!(
        "native commit: copied {} entries, {} data bytes, {} reflinked, {} fsyncs in {:?}",
        copied.entries,
        copied.data_bytes,
        copied.reflinked,
        copied.fsyncs,
        t.elapsed()
    );
    staged.copied = copied;
    Ok(Some(staged))
}

/// Remove the staging copies of native commits whose process is gone (killed mid-copy):
/// named `native-PID-RANDOM`, they hold no mount and nothing refers to them.
fn sweep_stale(store: &Store) {
    let Ok(rd) = std::fs::read_dir(store.tmp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("native-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if crate::util::pid_start_time(pid).is_none() {
            let _ = remove_tree(&e.path());
        }
    }
}

/// Move a staged native layer into the store under a fresh local id (hold the exclusive
/// lock); the id (hex).
pub fn publish(store: &Store, staged: NativeStaged) -> Result<String> {
    let hex = random_id()?;
    let dest = store.layer_dir(&hex);
    std::fs::rename(staged.tree(), &dest)
        .ctx(|| format!("cannot move the layer into {}", dest.display()))?;
    // The layer's name is on disk before its metadata (which makes it a layer) names it.
    std::fs::File::open(store.layers_dir())
        .and_then(|f| f.sync_all())
        .ctx(|| format!("cannot sync {}", store.layers_dir().display()))?;
    write_json(
        &layer::info_path(store, &hex),
        &LayerInfo {
            diff_id: format!("sha256:{hex}"),
            size: layer::tree_size(&dest),
            created: now_secs(),
            native: Some(Native {
                below: staged.below.clone(),
                plain_diff_id: None,
                plain_size: None,
            }),
        },
    )?;
    Ok(hex)
}

/// The native record of a stored layer, None for a plain layer (or unreadable metadata).
pub fn native_of(store: &Store, hex: &str) -> Option<Native> {
    layer::info(store, hex).ok().and_then(|i| i.native)
}

/// True if any of the layers is native.
pub fn any_native(store: &Store, hexes: &[String]) -> bool {
    hexes.iter().any(|h| native_of(store, h).is_some())
}
