//! `strata pause` / `unpause`: freeze and thaw every process of a container through the
//! cgroup freezer (v1 `freezer.state`, v2 `cgroup.freeze`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::container::{self, Status};
use crate::err;
use crate::isolation::cgroups;
use crate::store::Store;
use crate::util::{Ctx, Result};

/// The freezer file of container `id` and the (frozen, thawed) words it takes.
fn freezer(id: &str) -> Option<(PathBuf, &'static str, &'static str)> {
    cgroups::existing(id).dirs.into_iter().find_map(|d| {
        if d.join("freezer.state").exists() {
            Some((d.join("freezer.state"), "FROZEN", "THAWED"))
        } else if d.join("cgroup.freeze").exists() {
            Some((d.join("cgroup.freeze"), "1", "0"))
        } else {
            None
        }
    })
}

/// True while container `id`'s cgroup is frozen.
pub fn is_paused(id: &str) -> bool {
    freezer(id).is_some_and(|(f, frozen, _)| {
        std::fs::read_to_string(f).is_ok_and(|s| s.trim() == frozen || s.trim() == "FREEZING")
    })
}

fn set(store: &Store, id: &str, freeze: bool) -> Result<()> {
    let st = container::reconcile(store, id)?;
    if st.status != Status::Running {
        return Err(err!("container {id} is not running"));
    }
    let (file, frozen, thawed) = freezer(id)
        .ok_or_else(|| err!("container {id} has no cgroup freezer: this host mounts none"))?;
    if freeze == is_paused(id) {
        return Err(if freeze {
            err!("container {id} is already paused")
        } else {
            err!("container {id} is not paused")
        });
    }
    let word = if freeze { frozen } else { thawed };
    std::fs::write(&file, word).ctx(|| format!("cannot write {}", file.display()))?;
    // v1 passes through FREEZING while tasks stop; wait (bounded) until it settles.
    let deadline = Instant::now() + Duration::from_secs(5);
    while freeze && Instant::now() < deadline {
        if std::fs::read_to_string(&file).is_ok_and(|s| s.trim() == frozen) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Freeze every process of container `id`.
pub fn pause(store: &Store, id: &str) -> Result<()> {
    set(store, id, true)
}

/// Thaw container `id`.
pub fn unpause(store: &Store, id: &str) -> Result<()> {
    set(store, id, false)
}

/// Thaw container `id` if it is frozen (before a signal that must reach it: a frozen task
/// neither handles SIGTERM nor dies of SIGKILL until thawed).
pub fn thaw_if_paused(id: &str) {
    if is_paused(id) {
        if let Some((f, _, thawed)) = freezer(id) {
            let _ = std::fs::write(f, thawed);
        }
    }
}
