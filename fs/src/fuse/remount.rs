//! `remount`: changing the VFS flags of a live strata mount (`mount -o remount,ro MNT`,
//! `strata mount -o remount,rw MNT`, an /etc/fstab line).
//!
//! mount(8) does not remount a `fuse.strata` mount itself: it runs the helper (mount.fuse3,
//! which runs `strata SOURCE MNT -o remount,<every flag of the mount, merged with fstab and
//! the command line>`). So strata, called with `remount` among its options, does what the
//! kernel needs: mount(2) with MS_REMOUNT and the mount's complete flags (the current
//! ones from mountinfo, then the words given, in order; FUSE ignores data on remount),
//! instead of mounting anew, and then tells the daemon over the control socket, which
//! applies `ro`/`rw` to the union and the atime flags to its reads (atime.rs).

use crate::config::options::MountOptions;
use nix::mount::MsFlags;
use serde_json::{json, Value};
use std::path::Path;

/// Whether the option groups ask for a remount.
pub fn is_remount<S: AsRef<str>>(groups: &[S]) -> bool {
    groups
        .iter()
        .any(|g| g.as_ref().split(',').any(|w| w.trim() == "remount"))
}

/// Options the kernel shows for every FUSE mount (libmount passes them back on remount);
/// they cannot change.
fn fuse_super_option(w: &str) -> bool {
    let key = w.split_once('=').map_or(w, |(k, _)| k);
    matches!(
        key,
        "user_id"
            | "group_id"
            | "rootmode"
            | "default_permissions"
            | "allow_other"
            | "allow_root"
            | "max_read"
            | "blksize"
            | "fd"
            | "fsname"
            | "subtype"
            | "source"
            | "defaults"
            | "remount"
    )
}

/// The new flags: `current` with each VFS word of `groups` applied in order. Branch and
/// other strata options (fstab lines carry them) are checked and left as they are.
fn new_flags<S: AsRef<str>>(current: MsFlags, groups: &[S]) -> Result<MsFlags, String> {
    let mut flags = current;
    for g in groups {
        for w in g.as_ref().split(',').map(str::trim) {
            if w.is_empty()
                || fuse_super_option(w)
                || crate::config::vfs_flags::apply(&mut flags, w)
            {
                continue;
            }
            // A strata option: a typo must still fail, a valid one cannot change live.
            MountOptions::check_one(w)?;
            tracing::debug!("remount: {w} is kept as mounted");
        }
    }
    Ok(flags)
}

/// Flag words for the daemon, `ro` first.
fn words(flags: MsFlags) -> Vec<&'static str> {
    let all = [
        ("ro", MsFlags::MS_RDONLY),
        ("noatime", MsFlags::MS_NOATIME),
        ("relatime", MsFlags::MS_RELATIME),
        ("strictatime", MsFlags::MS_STRICTATIME),
        ("nodiratime", MsFlags::MS_NODIRATIME),
    ];
    all.iter()
        .filter(|(_, f)| flags.contains(*f))
        .map(|(w, _)| *w)
        .collect()
}

/// Remount the strata mount at the top of `mountpoint` with the flags in `groups`.
pub fn remount<S: AsRef<str>>(mountpoint: &Path, groups: &[S]) -> Result<(), String> {
    use crate::observe::control::{connect, find_mount, request};
    let mnt = std::fs::canonicalize(mountpoint)
        .map_err(|e| format!("mountpoint {}: {e}", mountpoint.display()))?;
    let top = crate::fuse::mount::top_mount(&mnt)
        .filter(|m| m.fstype == "fuse.strata")
        .ok_or_else(|| format!("cannot remount {}: no strata mount there", mnt.display()))?;
    let current = crate::config::vfs_flags::current(top.id)
        .ok_or_else(|| format!("cannot remount {}: not in mountinfo", mnt.display()))?;
    let flags = new_flags(current, groups)?;
    let to_rw = current.contains(MsFlags::MS_RDONLY) && !flags.contains(MsFlags::MS_RDONLY);
    let mut daemon = find_mount(&mnt).and_then(|m| connect(&m));
    if to_rw {
        let conn = daemon.as_mut().map_err(|e| e.to_string())?;
        let ping = request(conn, &json!({"op": "ping"})).map_err(|e| e.to_string())?;
        if ping.get("upper").is_none_or(Value::is_null) {
            return Err(format!(
                "cannot remount {} read-write: it has no upperdir (a union without one is read-only)",
                mnt.display()
            ));
        }
    }
    nix::mount::mount(
        None::<&str>,
        &mnt,
        None::<&str>,
        MsFlags::MS_REMOUNT | flags,
        None::<&str>,
    )
    .map_err(|e| format!("cannot remount {}: {}", mnt.display(), e.desc()))?;
    let told = daemon.map_err(|e| e.to_string()).and_then(|mut c| {
        let r = request(&mut c, &json!({"op": "remount", "flags": words(flags)}))
            .map_err(|e| e.to_string())?;
        match r.get("ok").and_then(Value::as_bool) {
            Some(true) => Ok(()),
            _ => Err(r.get("error").map_or("refused".into(), Value::to_string)),
        }
    });
    match told {
        Ok(()) => Ok(()),
        // The kernel keeps refusing writes while the daemon still thinks it is read-only.
        Err(e) if to_rw => Err(format!(
            "{} is read-write again, but its daemon was not told ({e}): writes fail with EROFS",
            mnt.display()
        )),
        Err(e) => {
            tracing::warn!(
                "remounted {}; its daemon was not told ({e}): atime flags unchanged",
                mnt.display()
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_from_helper_and_user_forms() {
        // What mount.fuse3 passes: every flag of the mount, merged.
        let cur = MsFlags::MS_NOSUID | MsFlags::MS_RELATIME;
        let f = new_flags(
            cur,
            &["ro,nosuid,relatime,remount,user_id=0,group_id=0,default_permissions,allow_other,dev"],
        )
        .unwrap();
        assert_eq!(
            f,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_RELATIME
        );
        // What a user types: only the change.
        let f = new_flags(f, &["remount,rw,noexec"]).unwrap();
        assert_eq!(f, cur | MsFlags::MS_NOEXEC);
        assert!(new_flags(cur, &["remount,lowerdir=/a,upperdir=/u,workdir=/w"]).is_ok());
        assert!(new_flags(cur, &["remount", "upperdir=/u"]).is_ok());
        assert!(new_flags(cur, &["remount,bogus"]).is_err());
        assert!(is_remount(&["ro,remount"]));
        assert!(!is_remount(&["lowerdir=/remount"]));
    }
}
