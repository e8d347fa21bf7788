//! Rootless operation: a user namespace mapping the caller to root (plus its subordinate ids
//! through newuidmap/newgidmap when /etc/subuid and /etc/subgid list it, else the caller's
//! id alone), with a private mount namespace in which strata mounts the container's root.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::process::Command;

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{Gid, Uid};

use crate::err;
use crate::util::{Ctx, Result};
use strata_sys::{self as sys, Forked};

/// True when this process runs in a user namespace other than the initial one.
pub fn in_userns() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(m) => {
            let f: Vec<&str> = m.split_whitespace().collect();
            f != ["0", "0", "4294967295"]
        }
        Err(_) => false,
    }
}

/// True when strata runs as an ordinary user (and must work in a user namespace).
pub fn needed() -> bool {
    !nix::unistd::geteuid().is_root() && !in_userns()
}

/// The subordinate range of `name` (or numeric `id`) in /etc/subuid or /etc/subgid.
fn sub_range(file: &str, name: Option<&str>, id: u32) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        let matches = Some(who) == name || who == id.to_string();
        matches
            .then(|| Some((start.parse().ok()?, count.parse().ok()?)))
            .flatten()
    })
}

fn helper(name: &str) -> Option<String> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| std::path::Path::new(p).exists())
}

/// How the caller's ids are mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// uid/gid 0 is the caller; 1..=count are its subordinate ids.
    Ranges {
        /// First subordinate uid and how many.
        uids: (u32, u32),
        /// First subordinate gid and how many.
        gids: (u32, u32),
    },
    /// Only the caller's own ids (no subordinate ranges or no newuidmap).
    Single,
}

/// The mapping strata would use for the calling user.
pub fn mapping() -> Mapping {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name);
    let uids = sub_range("/etc/subuid", name.as_deref(), uid.as_raw());
    let gids = sub_range(
        "/etc/subgid",
        name.as_deref(),
        nix::unistd::getgid().as_raw(),
    );
    match (uids, gids, helper("newuidmap"), helper("newgidmap")) {
        (Some(uids), Some(gids), Some(_), Some(_)) => Mapping::Ranges { uids, gids },
        _ => Mapping::Single,
    }
}

/// Create a user namespace (caller = root) and a mount namespace, and enter both. Call
/// while the process is single-threaded.
pub fn enter_new() -> Result<()> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    match mapping() {
        Mapping::Ranges { uids, gids } => {
            let (r, w) = nix::unistd::pipe().ctx(|| "cannot create a pipe")?;
            let me = std::process::id().to_string();
            // SAFETY: entering the user namespace is the first thing a rootless command
            // does, before it starts any thread (unshare(CLONE_NEWUSER) requires that too).
            #[allow(unsafe_code)]
            let forked = unsafe { sys::fork() };
            let child = match forked.ctx(|| "cannot fork")? {
                Forked::Child => {
                    drop(w);
                    // Wait until the parent has its new user namespace.
                    let mut b = [0u8; 1];
                    let _ = File::from(r).read(&mut b);
                    let run = |tool: &str, own: u32, (start, count): (u32, u32)| {
                        Command::new(helper(tool).unwrap_or_else(|| tool.into()))
                            .args([&me, "0", &own.to_string(), "1", "1"])
                            .args([start.to_string(), count.to_string()])
                            .status()
                            .is_ok_and(|s| s.success())
                    };
                    let ok = run("newuidmap", uid, uids) && run("newgidmap", gid, gids);
                    sys::exit_now(if ok { 0 } else { 1 })
                }
                Forked::Parent(pid) => pid,
            };
            drop(r);
            let shared = unshare(CloneFlags::CLONE_NEWUSER);
            let _ = nix::unistd::write(w.as_fd(), b"x");
            drop(w);
            let status = waitpid(child, None);
            shared.map_err(|e| {
                err!("cannot create a user namespace: {e} (are unprivileged user namespaces enabled?)")
            })?;
            if !matches!(status, Ok(WaitStatus::Exited(_, 0))) {
                return Err(err!(
                    "newuidmap/newgidmap could not map uid {uid} and gid {gid} with their subordinate ranges: check /etc/subuid and /etc/subgid"
                ));
            }
        }
        Mapping::Single => {
            unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| {
                err!("cannot create a user namespace: {e} (are unprivileged user namespaces enabled?)")
            })?;
            std::fs::write("/proc/self/setgroups", "deny")
                .ctx(|| "cannot write /proc/self/setgroups")?;
            std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
                .ctx(|| "cannot write /proc/self/uid_map")?;
            std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
                .ctx(|| "cannot write /proc/self/gid_map")?;
        }
    }
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .ctx(|| "cannot become root in the user namespace")?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .ctx(|| "cannot become root in the user namespace")?;
    unshare(CloneFlags::CLONE_NEWNS).ctx(|| "cannot create a mount namespace")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .ctx(|| "cannot make the mount namespace private")?;
    Ok(())
}

/// Join the user and mount namespaces of process `pid` (a rootless container's supervisor,
/// where its root is mounted). Call while the process is single-threaded.
pub fn join(pid: i32) -> Result<()> {
    for (name, flag) in [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let f = File::open(format!("/proc/{pid}/ns/{name}"))
            .ctx(|| format!("cannot open the {name} namespace of process {pid}"))?;
        setns(f.as_fd(), flag)
            .ctx(|| format!("cannot join the {name} namespace of process {pid}"))?;
    }
    Ok(())
}

/// True if process `pid` is in another user namespace than this one.
pub fn other_userns(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ino = |p: String| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let theirs = ino(format!("/proc/{pid}/ns/user"));
    theirs.is_some() && theirs != ino("/proc/self/ns/user".into())
}

/// True when `id` is inside a range of a /proc/PID/{uid,gid}_map text (lines of
/// "inside outside count"): it exists in that user namespace.
pub fn id_mapped(map: &str, id: u32) -> bool {
    map.lines().any(|l| {
        let n: Vec<u64> = l
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        matches!(n[..], [inside, _, count] if (inside..inside + count).contains(&u64::from(id)))
    })
}
