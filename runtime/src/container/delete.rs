//! `strata rm`: a container's files, then the layers no image or container uses.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::container::{self, Paths, Status};
use crate::err;
use crate::store::Store;
use crate::util::Result;

use super::reconcile::{reconcile, wait_exited};
use super::supervise::cleanup;

/// Remove a stopped container's directory (config.json first), then the layers no image or
/// container uses any more; with `volumes`, its anonymous volumes too.
pub(crate) fn remove_files(store: &Store, id: &str, volumes: bool) -> Result<()> {
    let _lock = store.lock_exclusive()?;
    // Its addresses first (issue 17): an error leaves the container whole.
    crate::network::release(store, id)?;
    let p = Paths::new(store, id);
    let cfg = container::load_config(store, id).ok();
    if let Some(cfg) = &cfg {
        super::events::record(store, "destroy", cfg, &[]);
    }
    let mounts = cfg.map(|c| c.volumes).unwrap_or_default();
    // config.json first: a half-removed directory is then no longer listed as a container.
    let _ = std::fs::remove_file(p.config());
    crate::store::remove_tree(&p.dir)?;
    if volumes {
        crate::volume::remove_anonymous(store, &mounts);
    }
    crate::image::commands::gc_layers(store)?;
    Ok(())
}

/// Remove a container (killing it first with `force`).
pub fn remove(store: &Store, id: &str, force: bool) -> Result<()> {
    remove_with_volumes(store, id, force, false)
}

/// `rm [-f] [-v]`: remove a container, with `volumes` its anonymous volumes too.
pub fn remove_with_volumes(store: &Store, id: &str, force: bool, volumes: bool) -> Result<()> {
    let st = reconcile(store, id)?;
    if st.status == Status::Running {
        if !force {
            return Err(err!(
                "container {id} is running: stop it first or use rm -f"
            ));
        }
        if let Some(pid) = st.pid {
            container::update_state(store, id, |st| st.stopping = true)?;
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if wait_exited(store, id)?.is_none() {
            // Run with --rm: its supervisor removed it.
            return Ok(());
        }
    }
    cleanup(store, id)?;
    remove_files(store, id, volumes)
}
