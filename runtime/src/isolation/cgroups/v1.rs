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
    let mut out: Vec<PathBuf> = CONTROLLERS
        .iter()
        .map(|c| root.join(c))
        .filter(|c| c.join("cgroup.procs").exists())
        .map(|c| c.join("strata").join(id))
        .collect();
    // cpuset only for the containers that asked (see cpuset_dir).
    let cpuset = root.join("cpuset/strata").join(id);
    if cpuset.is_dir() {
        out.push(cpuset);
    }
    out
}

/// A cpuset directory under `root/cpuset` for `--cpuset-cpus/--cpuset-mems`. A new v1
/// cpuset has no CPUs and no memory nodes (nothing may join it), so each level starts
/// with its parent's, as docker does.
fn cpuset_dir(root: &Path, id: &str) -> Result<PathBuf> {
    let base = root.join("cpuset");
    if !base.join("cgroup.procs").exists() {
        return Err(crate::err!(
            "--cpuset-cpus/--cpuset-mems: the cpuset cgroup controller is not mounted"
        ));
    }
    let mut parent = base;
    for part in ["strata", id] {
        let d = parent.join(part);
        std::fs::create_dir_all(&d).ctx(|| format!("cannot create the cgroup {}", d.display()))?;
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let mine = std::fs::read_to_string(d.join(f)).unwrap_or_default();
            if mine.trim().is_empty() {
                let theirs = std::fs::read_to_string(parent.join(f))
                    .ctx(|| format!("cannot read {}", parent.join(f).display()))?;
                write(&d, f, theirs.trim())?;
            }
        }
        parent = d;
    }
    Ok(parent)
}

/// Create the directories and write the limits.
pub fn create(root: &Path, id: &str, limits: &Limits) -> Result<Cgroup> {
    let mut dirs = dirs(root, id);
    let wants_cpuset = limits.cpuset_cpus.is_some() || limits.cpuset_mems.is_some();
    if wants_cpuset {
        let d = cpuset_dir(root, id)?;
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
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
        if wants_cpuset {
            let d = ctl("cpuset").ok_or_else(|| {
                crate::err!("--cpuset-cpus: the cpuset cgroup controller is not mounted")
            })?;
            if let Some(c) = &limits.cpuset_cpus {
                write(d, "cpuset.cpus", c)?;
            }
            if let Some(m) = &limits.cpuset_mems {
                write(d, "cpuset.mems", m)?;
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = cg.remove();
        return Err(e);
    }
    Ok(cg)
}
