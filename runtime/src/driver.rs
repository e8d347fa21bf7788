//! Storage drivers: how a container's layers and upper directory become its root.
//! `overlay` is the kernel's overlayfs, `fuse` is strata's own union (the strata binary in
//! podman's mount_program form), `auto` picks overlay where it mounts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::err;
use crate::spec::Trace;
use crate::store::Store;
use crate::util::{Ctx, Result};

/// A storage driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Kernel overlayfs.
    Overlay,
    /// strata's FUSE union.
    Fuse,
}

impl Driver {
    /// Its name on the command line and in metadata.
    pub fn name(self) -> &'static str {
        match self {
            Driver::Overlay => "overlay",
            Driver::Fuse => "fuse",
        }
    }
    /// Parse a stored name.
    pub fn from_name(s: &str) -> Result<Driver> {
        match s {
            "overlay" => Ok(Driver::Overlay),
            "fuse" => Ok(Driver::Fuse),
            _ => Err(err!(
                "unknown storage driver {s:?}: use fuse, overlay or auto"
            )),
        }
    }
}

/// Pick the driver for `requested` ("fuse", "overlay" or "auto") and say why. `native`: the
/// image has native layers (commits made on the fuse driver), which `auto` gives to the
/// fuse driver, the one that reads them as they are (overlay needs a materialized copy).
pub fn choose(store: &Store, requested: &str, native: bool) -> Result<(Driver, String)> {
    match requested {
        "overlay" if native => Ok((
            Driver::Overlay,
            "requested with --driver overlay (the image's native layers are mounted as plain copies, materialized once)".into(),
        )),
        "overlay" => Ok((Driver::Overlay, "requested with --driver overlay".into())),
        "fuse" => Ok((Driver::Fuse, "requested with --driver fuse".into())),
        "auto" | "" if native => Ok((
            Driver::Fuse,
            "the image has native layers (commits made on the fuse driver): strata's FUSE union reads them as they are, deltas included".into(),
        )),
        "auto" | "" => match probe_overlay(store) {
            Ok(()) => Ok((
                Driver::Overlay,
                format!("kernel overlayfs mounts on {}", store.root.display()),
            )),
            Err(why) => Ok((
                Driver::Fuse,
                format!("kernel overlayfs unusable here ({why}), using strata's FUSE union"),
            )),
        },
        other => Err(err!(
            "unknown storage driver {other:?}: use fuse, overlay or auto"
        )),
    }
}

/// Try a tiny overlay mount in the store's tmp directory.
fn probe_overlay(store: &Store) -> std::result::Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not running as root".into());
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        return Err("the kernel has no overlay filesystem".into());
    }
    let dir = store.staging_dir("probe").map_err(|e| e.to_string())?;
    let (lower, upper, work, merged) = (dir.join("l"), dir.join("u"), dir.join("w"), dir.join("m"));
    let r = (|| {
        for d in [&lower, &upper, &work, &merged] {
            std::fs::create_dir(d).map_err(|e| e.to_string())?;
        }
        mount_overlay(std::slice::from_ref(&lower), &upper, &work, &merged)
            .map_err(|e| e.to_string())?;
        let _ = umount2(&merged, MntFlags::MNT_DETACH);
        Ok(())
    })();
    let _ = crate::store::remove_tree(&dir);
    r
}

fn check_path(p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .ok_or_else(|| err!("{} is not UTF-8", p.display()))?;
    if s.contains([',', ':']) {
        return Err(err!(
            "{} contains ',' or ':': use a --root without them",
            p.display()
        ));
    }
    Ok(s.to_string())
}

fn mount_overlay(lowers: &[PathBuf], upper: &Path, work: &Path, merged: &Path) -> Result<()> {
    let lower = lowers
        .iter()
        .map(|p| check_path(p))
        .collect::<Result<Vec<_>>>()?
        .join(":");
    // No redirects or metacopy: the upper must hold whole files and plain directories so a
    // commit can turn it into an OCI layer.
    let mut opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        check_path(upper)?,
        check_path(work)?
    );
    if crate::isolation::rootless::in_userns() {
        // Unprivileged overlay mounts keep their metadata in user.overlay.* xattrs; that mode
        // never creates redirects or metacopy files and refuses the options below.
        opts.push_str(",userxattr");
    } else {
        opts.push_str(",redirect_dir=off,metacopy=off,index=off");
    }
    mount(
        Some("overlay"),
        merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .ctx(|| {
        format!(
            "cannot mount overlayfs on {} (try --driver fuse)",
            merged.display()
        )
    })
}

/// Pick the driver for a traced container: only strata's union can be traced, so `auto`
/// means fuse and `overlay` is refused.
pub fn choose_traced(store: &Store, requested: &str, native: bool) -> Result<(Driver, String)> {
    match requested {
        "overlay" => Err(err!(
            "--trace needs strata's FUSE union (the kernel's overlayfs cannot be traced): use --driver fuse or auto"
        )),
        "auto" | "" => Ok((
            Driver::Fuse,
            "--trace needs strata's FUSE union (auto picks it when tracing)".into(),
        )),
        other => choose(store, other, native),
    }
}

/// The mount options that turn tracing on. FUSE passthrough hands reads and writes of whole
/// files to the kernel, where strata never sees them: it is off when those ops are traced.
fn trace_options(t: &Trace) -> Result<String> {
    let mut s = format!(",trace={}", check_path(&t.file)?);
    if !t.ops.is_empty() {
        s.push_str(&format!(",trace_ops={}", t.ops));
    }
    if !t.path.is_empty() {
        s.push_str(&format!(",trace_path={}", t.path));
    }
    let io_traced = t.ops.is_empty()
        || t.ops
            .split(':')
            .any(|o| matches!(o, "read" | "write" | "copy_file_range"));
    if io_traced {
        s.push_str(",passthrough=0");
    }
    Ok(s)
}

/// Mount the union of `lowers` (top first) and `upper` at `merged`, traced with `trace`
/// (strata's union only).
pub fn mount_union(
    driver: Driver,
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    merged: &Path,
    trace: Option<&Trace>,
) -> Result<()> {
    match (driver, trace) {
        (Driver::Overlay, None) => mount_overlay(lowers, upper, work, merged),
        (Driver::Overlay, Some(_)) => Err(err!(
            "--trace needs strata's FUSE union (the kernel's overlayfs cannot be traced): use --driver fuse"
        )),
        (Driver::Fuse, None) => fuse_mount(lowers, upper, work, merged, ""),
        (Driver::Fuse, Some(t)) => fuse_mount(lowers, upper, work, merged, &trace_options(t)?),
    }
}

/// After the unmount of a traced union: wait (up to `timeout`) until its daemon has written
/// the trace's last line, so the trace is complete when the container's command returns.
pub fn wait_trace_end(file: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if trace_ended(file) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn trace_ended(file: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(file) else {
        return false;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut tail = Vec::new();
    if f.seek(SeekFrom::Start(len.saturating_sub(512))).is_err()
        || f.read_to_end(&mut tail).is_err()
    {
        return false;
    }
    let text = String::from_utf8_lossy(&tail);
    text.ends_with('\n')
        && text
            .trim_end()
            .rsplit('\n')
            .next()
            .is_some_and(|l| l.contains("\"op\":\"trace_end\""))
}

fn fuse_mount(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    merged: &Path,
    extra: &str,
) -> Result<()> {
    let exe = std::env::current_exe().ctx(|| "cannot find the strata binary")?;
    let lower = lowers
        .iter()
        .map(|p| check_path(p))
        .collect::<Result<Vec<_>>>()?
        .join(":");
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}{extra}",
        check_path(upper)?,
        check_path(work)?
    );
    let out = Command::new(&exe)
        .arg("-o")
        .arg(&opts)
        .arg(merged)
        .stdin(std::process::Stdio::null())
        .output()
        .ctx(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        return Err(err!(
            "strata's FUSE union did not mount on {} ({}): {} (try --driver overlay)",
            merged.display(),
            out.status,
            msg.trim()
        ));
    }
    if !is_mounted(merged) {
        return Err(err!(
            "strata's FUSE union exited 0 but {} is not mounted",
            merged.display()
        ));
    }
    Ok(())
}

/// Mount a read-only view of a stopped container's root at `merged` (for commit and export):
/// overlay stacks the upper as the top lower branch; strata's union is mounted `ro` over
/// the same branches so its meta xattrs are still interpreted.
pub fn mount_readonly(
    driver: Driver,
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    merged: &Path,
) -> Result<()> {
    match driver {
        Driver::Overlay => {
            let mut all = vec![check_path(upper)?];
            for l in lowers {
                all.push(check_path(l)?);
            }
            let mut opts = format!("lowerdir={}", all.join(":"));
            if crate::isolation::rootless::in_userns() {
                opts.push_str(",userxattr");
            }
            mount(
                Some("overlay"),
                merged,
                Some("overlay"),
                MsFlags::MS_RDONLY,
                Some(opts.as_str()),
            )
            .ctx(|| format!("cannot mount a read-only overlay on {}", merged.display()))
        }
        Driver::Fuse => fuse_mount(lowers, upper, work, merged, ",ro"),
    }
}

/// Unmount the container root mounted at `path`, and only it: the top mount there, if it
/// is a union this runtime makes (strata's `fuse.strata`, by its device, as `strata umount`
/// does; or kernel overlayfs). A mount stacked over it, or one made there by someone
/// else, is left alone (an error). Detaches lazily if busy; not mounted is fine.
pub fn unmount(path: &Path) -> Result<()> {
    use strata_fs::fuse::mount::{top_mount, unmount_if, Unmounted};
    // mountinfo spells canonical paths; resolve only when needed (the stat of a mount
    // whose daemon hangs would hang too).
    let found = top_mount(path)
        .map(|t| (path.to_path_buf(), t))
        .or_else(|| {
            let c = std::fs::canonicalize(path).ok()?;
            top_mount(&c).map(|t| (c, t))
        });
    let Some((path, top)) = found else {
        return Ok(());
    };
    let path = path.as_path();
    match top.fstype.as_str() {
        "fuse.strata" | "fuse" => {
            return match unmount_if(path, top.dev, Duration::from_secs(1)) {
                // NotOurs: its daemon ended it meanwhile; nothing else was touched.
                Unmounted::Yes | Unmounted::NotOurs => Ok(()),
                Unmounted::Failed(e) => Err(err!("cannot unmount {}: {e}", path.display())),
            };
        }
        "overlay" => {}
        other => {
            return Err(err!(
                "{} is not the container's root mount (the mount there is {other}): left alone",
                path.display()
            ))
        }
    }
    match umount2(path, MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EBUSY) => {
            umount2(path, MntFlags::MNT_DETACH).ctx(|| format!("cannot unmount {}", path.display()))
        }
        Err(e) => Err(err!("cannot unmount {}: {e}", path.display())),
    }
}

/// True if something is mounted exactly at `path` (in this mount namespace).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(&*want))
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mount stacked over a container root by someone else is never the one unmounted.
    #[test]
    fn unmount_leaves_a_foreign_mount() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to mount a tmpfs");
            return;
        }
        let dir = std::env::temp_dir().join(format!("strata-driver-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        let r = unmount(&dir);
        let still = is_mounted(&dir);
        let _ = umount2(&dir, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&dir);
        assert!(r.is_err(), "unmount of a foreign tmpfs answered Ok");
        assert!(still, "unmount took down a tmpfs it did not make");
        assert!(unmount(&dir).is_ok(), "not mounted must be fine");
    }
}
