//! The container's filesystem view, built in its new mount namespace: volumes, /proc, /dev,
//! /sys on top of the union mount, then pivot_root and the masked and read-only paths.

use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::container::Volume;
use crate::err;
use crate::util::{Ctx, Result};

/// /proc and /sys paths hidden from containers (docker's list).
const MASKED: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/interrupts",
];

/// /proc paths made read-only.
const READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Host device nodes bind-mounted into the container's /dev.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

const NONE: Option<&str> = None;

/// Resolve `path` inside `root` as if `root` were `/`: symlinks are followed relative to
/// `root` and `..` never climbs above it, so a hostile image cannot aim a mount at the host.
pub fn secure_join(root: &Path, path: &str) -> Result<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> = Path::new(path)
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(resolved.iter().collect::<PathBuf>()).join(&c);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(err!("too many symlinks resolving {path} in the container"));
                }
                let target = std::fs::read_link(&candidate)
                    .ctx(|| format!("cannot read {}", candidate.display()))?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for tc in target.components().rev() {
                    match tc {
                        Component::Normal(n) => pending.push(n.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => resolved.push(c),
        }
    }
    Ok(root.join(resolved.iter().collect::<PathBuf>()))
}

fn mnt(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    mount(src, target, fstype, flags, data).ctx(|| {
        format!(
            "cannot mount {} on {}",
            fstype.or(src).unwrap_or("?"),
            target.display()
        )
    })
}

fn bind(src: &Path, target: &Path, readonly: bool) -> Result<()> {
    mount(
        Some(src),
        target,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .ctx(|| format!("cannot bind {} on {}", src.display(), target.display()))?;
    if readonly {
        // Keep the flags the source mount has: in a user namespace (rootless) they are
        // locked, and a remount that drops one fails.
        use nix::sys::statvfs::{statvfs, FsFlags};
        let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if let Ok(st) = statvfs(target) {
            for (f, m) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if st.flags().contains(f) {
                    flags |= m;
                }
            }
        }
        mount(NONE, target, NONE, flags, NONE)
            .ctx(|| format!("cannot make {} read-only", target.display()))?;
    }
    Ok(())
}

/// Create the mount point for `source` at `target` (a directory or an empty file).
fn mount_point(source: &Path, target: &Path) -> Result<()> {
    if source.is_dir() {
        std::fs::create_dir_all(target).ctx(|| format!("cannot create {}", target.display()))
    } else {
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p).ctx(|| format!("cannot create {}", p.display()))?;
        }
        if !target.exists() {
            std::fs::File::create(target).ctx(|| format!("cannot create {}", target.display()))?;
        }
        Ok(())
    }
}

/// Mount everything under `root` (the union mount), in the container's mount namespace.
pub fn prepare(root: &Path, volumes: &[Volume]) -> Result<()> {
    // Nothing done here may propagate back to the host.
    mnt(
        NONE,
        Path::new("/"),
        NONE,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        NONE,
    )?;
    // pivot_root needs the new root to be a mount point of its own.
    bind(root, root, false)?;

    let proc_dir = root.join("proc");
    std::fs::create_dir_all(&proc_dir).ctx(|| format!("cannot create {}", proc_dir.display()))?;
    mnt(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        NONE,
    )?;

    let dev = root.join("dev");
    std::fs::create_dir_all(&dev).ctx(|| format!("cannot create {}", dev.display()))?;
    mnt(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for d in DEVICES {
        let target = dev.join(d);
        std::fs::File::create(&target).ctx(|| format!("cannot create {}", target.display()))?;
        bind(&Path::new("/dev").join(d), &target, false)?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name))
            .ctx(|| format!("cannot create /dev/{name}"))?;
    }
    for d in ["pts", "shm", "mqueue"] {
        std::fs::create_dir(dev.join(d)).ctx(|| format!("cannot create /dev/{d}"))?;
    }
    mnt(
        Some("devpts"),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    mnt(
        Some("shm"),
        &dev.join("shm"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )?;
    mnt(
        Some("mqueue"),
        &dev.join("mqueue"),
        Some("mqueue"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        NONE,
    )?;

    let sys = root.join("sys");
    std::fs::create_dir_all(&sys).ctx(|| format!("cannot create {}", sys.display()))?;
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if mount(Some("sysfs"), &sys, Some("sysfs"), ro, NONE).is_err() {
        bind(Path::new("/sys"), &sys, true)?;
    }

    for v in volumes {
        let target = secure_join(root, &v.target)?;
        mount_point(&v.source, &target)?;
        bind(&v.source, &target, v.readonly)?;
    }
    Ok(())
}

/// Bind the container's terminal `pts` (/dev/pts/N) to /dev/console (after pivot_root).
pub fn bind_console(pts: &Path) -> Result<()> {
    let console = Path::new("/dev/console");
    std::fs::File::create(console).ctx(|| "cannot create /dev/console")?;
    bind(pts, console, false)
}

/// Make `root` the root directory and drop the old one.
pub fn pivot(root: &Path) -> Result<()> {
    nix::unistd::chdir(root).ctx(|| format!("cannot enter {}", root.display()))?;
    // pivot_root(".", ".") stacks the old root under the new one; detaching "." then removes it.
    nix::unistd::pivot_root(".", ".").ctx(|| "pivot_root failed")?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "cannot detach the old root")?;
    nix::unistd::chdir("/").ctx(|| "cannot enter the new root")?;
    Ok(())
}

/// Hide and write-protect the sensitive /proc and /sys paths (after pivot_root).
pub fn mask_paths() -> Result<()> {
    for p in MASKED {
        let path = Path::new(p);
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {
                mnt(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, NONE)?
            }
            Ok(_) => bind(Path::new("/dev/null"), path, false)?,
            Err(_) => {}
        }
    }
    for p in READONLY {
        let path = Path::new(p);
        if path.exists() {
            bind(path, path, true)?;
        }
    }
    Ok(())
}
