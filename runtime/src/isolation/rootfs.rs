//! The container's filesystem view, built in its new mount namespace: volumes, /proc, /dev,
//! /sys on top of the union mount, then pivot_root and the masked and read-only paths.

use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::err;
use crate::spec::Volume;
use crate::sys;
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
        make_readonly(target)?;
    }
    Ok(())
}

/// Make the bind mount at `target` read-only with every mount below it: the recursive bind
/// brought the source's submounts along (a `-v /:/host:ro`, the host's /sys when rootless),
/// and a remount changes the top mount only.
fn make_readonly(target: &Path) -> Result<()> {
    match sys::mount_readonly_recursive(target) {
        Ok(()) => Ok(()),
        // Kernels before 5.12 have no mount_setattr: remount each mount of the tree.
        Err(nix::errno::Errno::ENOSYS) => {
            for m in mounts_under(target)? {
                remount_readonly(&m)?;
            }
            Ok(())
        }
        Err(e) => Err(err!("cannot make {} read-only: {e}", target.display())),
    }
}

fn remount_readonly(target: &Path) -> Result<()> {
    // Keep the flags the mount has: in a user namespace (rootless) they are locked, and a
    // remount that drops one fails.
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
        .ctx(|| format!("cannot make {} read-only", target.display()))
}

/// `top` and the mount points below it, from /proc/self/mountinfo.
fn mounts_under(top: &Path) -> Result<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStringExt;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .ctx(|| "cannot read /proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in info.lines() {
        let Some(field) = line.split(' ').nth(4) else {
            continue;
        };
        // Spaces, tabs, newlines and backslashes in mount points are written as \ooo.
        let raw = field.as_bytes();
        let mut bytes = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let octal = raw
                .get(i + 1..i + 4)
                .filter(|o| o.iter().all(|b| (b'0'..=b'7').contains(b)));
            match (raw[i], octal) {
                (b'\\', Some(o)) => {
                    bytes.push(o.iter().fold(0u8, |n, d| n.wrapping_mul(8) + (d - b'0')));
                    i += 4;
                }
                (b, _) => {
                    bytes.push(b);
                    i += 1;
                }
            }
        }
        let point = PathBuf::from(std::ffi::OsString::from_vec(bytes));
        if point.starts_with(top) {
            out.push(point);
        }
    }
    Ok(out)
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
        // docker fills a new (empty) volume with what the image has at its mount point.
        if v.volume.is_some() && crate::volume::is_empty(&v.source) && target.is_dir() {
            crate::volume::copy::copy_contents(&target, &v.source)?;
        }
        mount_point(&v.source, &target)?;
        bind(&v.source, &target, v.readonly)?;
    }
    Ok(())
}

/// The tmpfs mounts, then with `read_only` the root itself made read-only (its submounts,
/// the volumes, tmpfs, /dev and /proc, keep their own modes), before pivot_root.
pub fn mount_extras(root: &Path, tmpfs: &[crate::spec::Tmpfs], read_only: bool) -> Result<()> {
    for t in tmpfs {
        let target = secure_join(root, &t.target)?;
        std::fs::create_dir_all(&target).ctx(|| format!("cannot create {}", target.display()))?;
        let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        let mut data = Vec::new();
        for o in t.options.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" => flags |= MsFlags::MS_RDONLY,
                "noexec" => flags |= MsFlags::MS_NOEXEC,
                "suid" => flags.remove(MsFlags::MS_NOSUID),
                "dev" => flags.remove(MsFlags::MS_NODEV),
                "noatime" => flags |= MsFlags::MS_NOATIME,
                "rw" | "exec" | "nosuid" | "nodev" | "atime" => {}
                kv => data.push(kv),
            }
        }
        let data = data.join(",");
        mnt(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        )?;
    }
    if read_only {
        remount_readonly(root)?;
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

/// The masked paths: [`MASKED`] and, as docker does since 28.0, every CPU's thermal_throttle
/// directory (a thermal side channel between containers, GHSA-6fw5-f8r9-fgfm).
fn masked_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = MASKED.iter().map(PathBuf::from).collect();
    if let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu") {
        for e in dir.flatten() {
            let name = e.file_name();
            let is_cpu = name
                .to_str()
                .and_then(|n| n.strip_prefix("cpu"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if is_cpu {
                paths.push(e.path().join("thermal_throttle"));
            }
        }
    }
    paths
}

/// Hide and write-protect the sensitive /proc and /sys paths (after pivot_root).
pub fn mask_paths() -> Result<()> {
    // Masked files become an empty read-only file rather than docker's /dev/null, so that
    // writing to them fails instead of vanishing.
    let empty = Path::new("/dev/.strata-masked");
    std::fs::File::create(empty).ctx(|| format!("cannot create {}", empty.display()))?;
    let masked = (|| {
        for path in masked_paths() {
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => mnt(
                    Some("tmpfs"),
                    &path,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    NONE,
                )?,
                Ok(_) => bind(empty, &path, true)?,
                Err(_) => {}
            }
        }
        Ok(())
    })();
    // The binds keep the file; its name would only clutter the container's /dev.
    let removed = std::fs::remove_file(empty).ctx(|| format!("cannot remove {}", empty.display()));
    masked.and(removed)?;
    for p in READONLY {
        let path = Path::new(p);
        if path.exists() {
            bind(path, path, true)?;
        }
    }
    Ok(())
}
