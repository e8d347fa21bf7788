//! A writable view of a container's root for `cp` into it: its live mount while it runs,
//! else the union mounted read-write for the copy (unmounted on drop).

use std::path::{Path, PathBuf};

use crate::container::{self, ContainerConfig, Paths, Status};
use crate::driver::{self, Driver};
use crate::err;
use crate::store::{remove_tree, Store};
use crate::util::{Ctx, Result};

/// The root a copy writes into.
pub struct RwView {
    path: PathBuf,
    staging: Option<PathBuf>,
}

impl RwView {
    /// Find or mount container `cfg`'s root, writable.
    pub fn open(store: &Store, cfg: &ContainerConfig) -> Result<RwView> {
        let paths = Paths::new(store, &cfg.id);
        let st = container::reconcile(store, &cfg.id)?;
        if driver::is_mounted(&paths.merged()) {
            return Ok(RwView {
                path: paths.merged(),
                staging: None,
            });
        }
        if st.status == Status::Running {
            return Err(err!(
                "container {} is running but its root is not mounted in this namespace: retry, or stop it first",
                cfg.name
            ));
        }
        crate::layer::check_present(store, &cfg.layers)?;
        let dir = store.staging_dir("cp")?;
        let m = dir.join("merged");
        let view = RwView {
            path: m.clone(),
            staging: Some(dir),
        };
        std::fs::create_dir(&m).ctx(|| format!("cannot create {}", m.display()))?;
        container::make_init_layer(&paths)?;
        driver::mount_union(
            Driver::from_name(&cfg.driver)?,
            &container::lower_dirs(store, cfg),
            &paths.upper(),
            &paths.work(),
            &m,
            None,
        )?;
        Ok(view)
    }

    /// Where the root is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RwView {
    fn drop(&mut self) {
        if let Some(dir) = &self.staging {
            let _ = driver::unmount(&self.path);
            let _ = remove_tree(dir);
        }
    }
}
