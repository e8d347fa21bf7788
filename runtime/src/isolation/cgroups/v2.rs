//! cgroup v2: one directory in the unified hierarchy.

use std::path::{Path, PathBuf};

use super::{write, Cgroup};
use crate::spec::Limits;
use crate::util::{Ctx, Result};

/// The directory of container `id`.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join("strata").join(id)
}

/// Create the directory, enable the controllers on the way down and write the limits.
pub fn create(root: &Path, id: &str, limits: &Limits) -> Result<Cgroup> {
    let parent = root.join("strata");
    std::fs::create_dir_all(&parent)
        .ctx(|| format!("cannot create the cgroup {}", parent.display()))?;
    let available = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<&str> = ["memory", "pids", "cpu", "cpuset"]
        .into_iter()
        .filter(|c| available.split_whitespace().any(|a| a == *c))
        .collect();
    for d in [root, parent.as_path()] {
        for c in &wanted {
            // Best effort: a controller already enabled or delegated elsewhere is fine.
            let _ = std::fs::write(d.join("cgroup.subtree_control"), format!("+{c}"));
        }
    }
    let d = dir(root, id);
    std::fs::create_dir_all(&d).ctx(|| format!("cannot create the cgroup {}", d.display()))?;
    let cg = Cgroup {
        dirs: vec![d.clone()],
    };
    let result = (|| {
        if let Some(bytes) = limits.memory {
            write(&d, "memory.max", &bytes.to_string())?;
            if d.join("memory.swap.max").exists() {
                write(&d, "memory.swap.max", "0")?;
            }
        }
        if let Some(n) = limits.pids {
            write(&d, "pids.max", &n.to_string())?;
        }
        if let Some(cpus) = limits.cpus {
            write(
                &d,
                "cpu.max",
                &format!("{} 100000", ((cpus * 100_000.0).round() as i64).max(1000)),
            )?;
        }
        if let Some(c) = &limits.cpuset_cpus {
            write(&d, "cpuset.cpus", c)?;
        }
        if let Some(m) = &limits.cpuset_mems {
            write(&d, "cpuset.mems", m)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = cg.remove();
        return Err(e);
    }
    Ok(cg)
}
