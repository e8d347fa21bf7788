//! cgroup v1: one hierarchy per controller under /sys/fs/cgroup/<controller>.

use std::path::{Path, PathBuf};

use super::{write, Cgroup};
use crate::spec::Limits;
use crate::util::{Ctx, Result};

/// Controllers strata places containers in (those mounted on this host).
const CONTROLLERS: [&str; 6] = ["memory", "pids", "cpu", "cpuacct", "devices", "freezer"];

/// Device rules of docker's default: nothing but the standard nodes and ptys.
const DEVICE_ALLOW: [&str; 11] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// The directories container `id` uses, one per mounted controller.
pub fn dirs(root: &Path, id: &str) -> Vec<PathBuf> {
    CONTROLLERS
        .iter()
        .map(|c| root.join(c))
        .filter(|c| c.join("cgroup.procs").exists())
        .map(|c| c.join("strata").join(id))
        .collect()
}

/// Create the directories and write the limits.
pub fn create(root: &Path, id: &str, limits: &Limits) -> Result<Cgroup> {
    let dirs = dirs(root, id);
    let cg = Cgroup { dirs: dirs.clone() };
    let result = (|| {
        for d in &dirs {
            std::fs::create_dir_all(d)
                .ctx(|| format!("cannot create the cgroup {}", d.display()))?;
        }
        let ctl = |name: &str| {
            dirs.iter().find(|d| {
                d.parent()
                    .and_then(Path::parent)
                    .is_some_and(|p| p.ends_with(name))
            })
        };
        if let Some(d) = ctl("devices") {
            write(d, "devices.deny", "a")?;
            for rule in DEVICE_ALLOW {
                write(d, "devices.allow", rule)?;
            }
        }
        if let Some(bytes) = limits.memory {
            let d = ctl("memory").ok_or_else(|| {
                crate::err!("--memory: the memory cgroup controller is not mounted")
            })?;
            write(d, "memory.limit_in_bytes", &bytes.to_string())?;
            // No swap beyond the limit, so a hog is killed rather than swapped out.
            if d.join("memory.memsw.limit_in_bytes").exists() {
                write(d, "memory.memsw.limit_in_bytes", &bytes.to_string())?;
            }
        }
        if let Some(n) = limits.pids {
            let d = ctl("pids").ok_or_else(|| {
                crate::err!("--pids-limit: the pids cgroup controller is not mounted")
            })?;
            write(d, "pids.max", &n.to_string())?;
        }
        if let Some(cpus) = limits.cpus {
            let d = ctl("cpu")
                .ok_or_else(|| crate::err!("--cpus: the cpu cgroup controller is not mounted"))?;
            write(d, "cpu.cfs_period_us", "100000")?;
            write(
                d,
                "cpu.cfs_quota_us",
                &((cpus * 100_000.0).round() as i64).max(1000).to_string(),
            )?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = cg.remove();
        return Err(e);
    }
    Ok(cg)
}
