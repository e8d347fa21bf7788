//! Host devices in a container, as docker gives them: `--device HOST[:CONTAINER[:PERMS]]`
//! binds one node into the container's /dev and lets it through a v1 device cgroup with
//! PERMS; `--privileged` binds every device node of the host's /dev, allows all devices, and
//! mounts /sys read-write. Nodes are bind-mounted rather than made with mknod, which works
//! rootless too (the kernel refuses device nodes made in a user namespace). On cgroup v2 the
//! device controller is an eBPF program strata does not load, so there the nodes' own
//! permissions and the capability set are what limit access.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use crate::err;
use crate::isolation::cgroups::Cgroup;
use crate::isolation::rootfs::secure_join;
use crate::spec::Security;
use crate::util::{Ctx, Result};

/// Host /dev entries a privileged container does not take: its own devpts, shm and mqueue,
/// and the names strata makes itself.
const SKIP: [&str; 9] = [
    "pts", "shm", "mqueue", "fd", "stdin", "stdout", "stderr", "ptmx", "console",
];

fn bind_node(host: &Path, target: &Path) -> Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).ctx(|| format!("cannot create {}", parent.display()))?;
    }
    if std::fs::symlink_metadata(target).is_err() {
        std::fs::File::create(target).ctx(|| format!("cannot create {}", target.display()))?;
    }
    mount(
        Some(host),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(|| {
        format!(
            "cannot bind the device {} on {}",
            host.display(),
            target.display()
        )
    })
}

/// Every device node under the host's /dev (two levels deep, as /dev/net/tun, /dev/dri/*).
fn host_nodes() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![(PathBuf::from("/dev"), 0)];
    while let Some((d, depth)) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            if depth == 0 && SKIP.iter().any(|s| name == *s) {
                continue;
            }
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() && depth < 2 {
                dirs.push((e.path(), depth + 1));
            } else if ft.is_char_device() || ft.is_block_device() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Before pivot_root, with the container's /dev and /sys mounted under `root`.
pub fn mount_all(root: &Path, s: &Security) -> Result<()> {
    if s.privileged {
        for host in host_nodes() {
            let rel = host.strip_prefix("/").unwrap_or(&host);
            let target = root.join(rel);
            // The standard nodes are bound already.
            if std::fs::symlink_metadata(&target).is_err() {
                bind_node(&host, &target)?;
            }
        }
        // docker mounts /sys read-write for --privileged: the read-only mount made writable
        // (where it is a bind of the host's, rootless, the lock on its flags keeps it ro).
        let sys = root.join("sys");
        let flags = MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC;
        if let Err(e) = mount(None::<&str>, &sys, None::<&str>, flags, None::<&str>) {
            tracing::debug!("--privileged: /sys stays read-only: {e}");
        }
        // A sysfs of its own (the container has its own network namespace) was made
        // read-only as a filesystem too, which the bind remount above leaves: reconfigure it.
        let sb = flags & !MsFlags::MS_BIND;
        if let Err(e) = mount(None::<&str>, &sys, None::<&str>, sb, None::<&str>) {
            tracing::debug!("--privileged: /sys's filesystem stays read-only: {e}");
        }
    }
    for d in &s.devices {
        let target = secure_join(root, &d.container)?;
        bind_node(&d.host, &target)?;
    }
    Ok(())
}

/// The device cgroup rules: "a" for --privileged, one "c|b MAJOR:MINOR PERMS" per --device.
pub fn rules(s: &Security) -> Result<Vec<String>> {
    if s.privileged {
        return Ok(vec!["a".into()]);
    }
    s.devices
        .iter()
        .map(|d| {
            let m = std::fs::metadata(&d.host)
                .map_err(|e| err!("cannot use --device {}: {e}", d.host.display()))?;
            let kind = if m.file_type().is_block_device() {
                'b'
            } else {
                'c'
            };
            let (maj, min) = (
                nix::sys::stat::major(m.rdev()),
                nix::sys::stat::minor(m.rdev()),
            );
            Ok(format!("{kind} {maj}:{min} {}", d.perms))
        })
        .collect()
}

/// Let the container's devices through its v1 device cgroup (a no-op without one).
pub fn allow(cg: &Cgroup, s: &Security) -> Result<()> {
    for rule in rules(s)? {
        for d in cg.dirs_of("devices") {
            let p = d.join("devices.allow");
            std::fs::write(&p, &rule).ctx(|| format!("cannot allow {rule} in {}", p.display()))?;
        }
    }
    Ok(())
}
