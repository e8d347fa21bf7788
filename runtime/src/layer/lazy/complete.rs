//! Completing a lazy layer from a full download: the blob was extracted into staging and
//! its diff_id checked, so every placeholder still pending gets its data from there, the
//! kept tar moves into the store, and the lazy records go.

use std::fs::File;
use std::io::{Seek, SeekFrom};

use nix::fcntl::OFlag;
use strata_fs::union::branch::Branch;

use crate::err;
use crate::layer::{tar_path, Staged};
use crate::store::Store;
use crate::util::Result;

use super::{files, fill_with, is_pending, lock, read, state_path, toc_path};

/// Fill what is pending in lazy layer `hex` from `staged` (same diff_id) and make the layer
/// an ordinary one. Returns how many files it filled.
pub fn complete_from(store: &Store, hex: &str, staged: Staged) -> Result<usize> {
    if staged.diff_hex != hex {
        return Err(err!(
            "layer sha256:{hex}: the downloaded blob has diff_id sha256:{}: the registry sent another layer",
            staged.diff_hex
        ));
    }
    let (state, toc) = read(store, hex)?;
    let dest = Branch::open(&store.layer_dir(hex), "lazy layer").map_err(|e| err!("{e}"))?;
    let src = Branch::open(&staged.tree(), "staged layer").map_err(|e| err!("{e}"))?;
    let mut filled = 0;
    {
        let _fill = lock(store, hex)?;
        for f in files(&toc, state.toc_offset).0 {
            let what = |e: std::io::Error| {
                err!("cannot fill {} of layer sha256:{hex}: {e}", f.rel.display())
            };
            let d = File::from(dest.open_at(&f.rel, OFlag::O_RDWR, 0).map_err(what)?);
            if !is_pending(&d) {
                continue;
            }
            let mut s = File::from(src.open_at(&f.rel, OFlag::O_RDONLY, 0).map_err(what)?);
            fill_with(&d, |mut d| {
                d.seek(SeekFrom::Start(0))?;
                std::io::copy(&mut s, &mut d)?;
                d.set_len(f.size)
            })
            .map_err(what)?;
            filled += 1;
        }
    }
    let _lock = store.lock_exclusive()?;
    let tar = tar_path(store, hex);
    if !tar.is_file() {
        std::fs::rename(staged.tar(), &tar)
            .map_err(|e| err!("cannot move the layer tar into {}: {e}", tar.display()))?;
    }
    // Another completion (the daemon's, or a second pull) may have finished first.
    match std::fs::remove_file(state_path(store, hex)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(err!(
                "cannot remove the lazy record of layer sha256:{hex}: {e}"
            ))
        }
        _ => {}
    }
    let _ = std::fs::remove_file(toc_path(store, hex));
    Ok(filled)
}
