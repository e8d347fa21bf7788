//! cgroup limits for a container, on the v1 (per-controller hierarchies) and v2 (unified)
//! layouts. Each container gets `strata/<id>` in every hierarchy it uses.

pub mod v1;
pub mod v2;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::spec::Limits;
use crate::util::{Ctx, Result};

const ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup layout the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Per-controller hierarchies (legacy or hybrid).
    V1,
    /// The unified hierarchy at /sys/fs/cgroup.
    V2,
}

/// The host's cgroup layout.
pub fn version() -> Version {
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        Version::V2
    } else {
        Version::V1
    }
}

/// A container's cgroup directories (one per v1 controller, or one v2 directory).
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// The directories, each with a cgroup.procs.
    pub dirs: Vec<PathBuf>,
}

/// Create the container's cgroups and write its limits.
pub fn create(id: &str, limits: &Limits) -> Result<Cgroup> {
    let cg = match version() {
        Version::V1 => v1::create(Path::new(ROOT), id, limits)?,
        Version::V2 => v2::create(Path::new(ROOT), id, limits)?,
    };
    Ok(cg)
}

/// The cgroup of container `id` as it would be created (for cleanup after a crash).
pub fn existing(id: &str) -> Cgroup {
    let dirs = match version() {
        Version::V1 => v1::dirs(Path::new(ROOT), id),
        Version::V2 => vec![v2::dir(Path::new(ROOT), id)],
    };
    Cgroup {
        dirs: dirs.into_iter().filter(|d| d.is_dir()).collect(),
    }
}

impl Cgroup {
    /// Move the calling process, which must be single-threaded, into every directory
    /// (writing "0" names the writer). On v1 through `tasks`: moving one thread skips the
    /// global threadgroup lock whose first taking waits out an RCU grace period (0.4 ms
    /// against 6-9 ms through cgroup.procs here, on every start); for a single-threaded
    /// process the result is the same.
    pub fn join_self(&self) -> Result<()> {
        for d in &self.dirs {
            let tasks = d.join("tasks");
            let p = if tasks.exists() {
                tasks
            } else {
                d.join("cgroup.procs")
            };
            std::fs::write(&p, "0").ctx(|| format!("cannot join the cgroup {}", p.display()))?;
        }
        Ok(())
    }

    /// True when a v1 device controller holds the container to docker's standard devices
    /// (v2 has no device files: it would need an eBPF program, which strata does not load).
    pub fn denies_devices(&self) -> bool {
        self.dirs.iter().any(|d| {
            d.parent()
                .and_then(Path::parent)
                .is_some_and(|c| c.ends_with("devices"))
        })
    }

    /// The directories of v1 controller `name` (none on v2).
    pub fn dirs_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a PathBuf> + 'a {
        self.dirs.iter().filter(move |d| {
            d.parent()
                .and_then(Path::parent)
                .is_some_and(|c| c.ends_with(name))
        })
    }

    /// Move process `pid` into every directory.
    pub fn add(&self, pid: i32) -> Result<()> {
        for d in &self.dirs {
            let p = d.join("cgroup.procs");
            std::fs::write(&p, pid.to_string())
                .ctx(|| format!("cannot join the cgroup {}", p.display()))?;
        }
        Ok(())
    }

    /// Pids still in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for d in &self.dirs {
            if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
                out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Kill what is left, then remove the directories (retrying while the kernel lets go).
    pub fn remove(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for d in &self.dirs {
            loop {
                for pid in self.pids() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                match std::fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(crate::err!("cannot remove the cgroup {}: {e}", d.display()))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        Ok(())
    }

    /// The memory limit the kernel holds for this cgroup, bytes.
    pub fn memory_limit(&self) -> Option<u64> {
        for d in &self.dirs {
            for f in ["memory.limit_in_bytes", "memory.max"] {
                if let Ok(s) = std::fs::read_to_string(d.join(f)) {
                    return s.trim().parse().ok();
                }
            }
        }
        None
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    std::fs::write(&p, value).ctx(|| format!("cannot set {} to {value}", p.display()))
}
