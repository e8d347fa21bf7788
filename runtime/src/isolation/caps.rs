//! Capabilities, as docker sets them: its default set adjusted by `--cap-add`/`--cap-drop`
//! (names with or without `CAP_`, any case, or `ALL`), applied with the `caps` crate in two
//! steps around the switch to the container's user, as runc does: first the bounding set
//! (ambient and inheritable emptied, permitted kept across setuid), then effective and
//! permitted. After execve root has exactly the set; any other user has none in effect
//! (the kernel grants a non-root process only its files' capabilities).

use std::collections::HashSet;

use caps::{CapSet, Capability, CapsHashSet};

use crate::err;
use crate::util::Result;

/// docker's default capabilities.
pub const DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// "sys_admin", "CAP_SYS_ADMIN", "Sys_Admin" → CAP_SYS_ADMIN; "all" → ALL.
fn normalize(name: &str) -> Result<String> {
    let up = name.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    full.parse::<Capability>().map_err(|_| {
        err!("unknown capability {name:?}: use a name from capabilities(7) such as NET_ADMIN or SYS_PTRACE, or ALL")
    })?;
    Ok(full)
}

/// Every capability this kernel has, by name.
pub fn all() -> Vec<String> {
    let mut v: Vec<String> = caps::runtime::thread_all_supported()
        .iter()
        .map(|c| c.to_string())
        .collect();
    v.sort();
    v
}

/// docker's rule: ALL in `add` is every capability but those dropped; ALL in `drop` keeps
/// only what is added; otherwise the default set minus `drop`, plus `add`.
pub fn resolve(add: &[String], drop: &[String]) -> Result<Vec<String>> {
    let add = add
        .iter()
        .map(|n| normalize(n))
        .collect::<Result<Vec<_>>>()?;
    let drop = drop
        .iter()
        .map(|n| normalize(n))
        .collect::<Result<Vec<_>>>()?;
    let has = |v: &[String], c: &str| v.iter().any(|x| x == c);
    let mut out: Vec<String> = if has(&add, "ALL") {
        all().into_iter().filter(|c| !has(&drop, c)).collect()
    } else if has(&drop, "ALL") {
        add
    } else {
        let mut v: Vec<String> = DEFAULT
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !has(&drop, c))
            .collect();
        v.extend(add.into_iter().filter(|c| c != "ALL"));
        v
    };
    out.sort();
    out.dedup();
    Ok(out)
}

/// The set to apply: `names` (kernel-unknown ones left out), without CAP_MKNOD unless
/// `mknod`: docker keeps it because its device cgroup refuses to open what was made, and
/// where no such cgroup applies a node of the host's disk would read the disk.
/// Capabilities strata itself lacks (a host whose bounding set is already reduced) are left
/// out too: a process cannot give what it has not, and docker's --privileged means "all the
/// daemon has".
pub fn set_of(names: &[String], mknod: bool) -> CapsHashSet {
    let have = caps::read(None, CapSet::Permitted)
        .unwrap_or_else(|_| caps::runtime::thread_all_supported());
    names
        .iter()
        .filter_map(|n| n.parse::<Capability>().ok())
        .filter(|c| have.contains(c) && (mknod || *c != Capability::CAP_MKNOD))
        .collect()
}

/// The names of `set`, for the seccomp rules that depend on capabilities.
pub fn names_of(set: &CapsHashSet) -> HashSet<String> {
    set.iter().map(|c| c.to_string()).collect()
}

fn ctx(what: &str, e: caps::errors::CapsError) -> crate::Error {
    err!("cannot {what}: {e}")
}

/// Step one, before the switch to the container's user: limit the bounding set to `set`,
/// empty the ambient and inheritable sets, and keep the permitted set across setuid so
/// step two can still set it.
pub fn bound(set: &CapsHashSet) -> Result<()> {
    for c in caps::runtime::thread_all_supported() {
        if !set.contains(&c) {
            caps::drop(None, CapSet::Bounding, c)
                .map_err(|e| ctx(&format!("drop {c} from the bounding set"), e))?;
        }
    }
    // Ambient capabilities may be unsupported on old kernels: nothing to clear then.
    let _ = caps::clear(None, CapSet::Ambient);
    caps::clear(None, CapSet::Inheritable).map_err(|e| ctx("clear the inheritable set", e))?;
    caps::securebits::set_keepcaps(true).map_err(|e| ctx("keep capabilities across setuid", e))
}

/// Step two, after the switch: effective = permitted = `set`.
pub fn finish(set: &CapsHashSet) -> Result<()> {
    caps::securebits::set_keepcaps(false).map_err(|e| ctx("reset keepcaps", e))?;
    caps::set(None, CapSet::Effective, set).map_err(|e| ctx("set the effective set", e))?;
    caps::set(None, CapSet::Permitted, set).map_err(|e| ctx("set the permitted set", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_docker_names() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let r = resolve(&s(&["net_admin", "CAP_sys_ptrace"]), &s(&["chown"])).unwrap();
        assert!(r.contains(&"CAP_NET_ADMIN".into()) && r.contains(&"CAP_SYS_PTRACE".into()));
        assert!(!r.contains(&"CAP_CHOWN".into()));
        assert_eq!(
            resolve(&s(&["kill"]), &s(&["ALL"])).unwrap(),
            s(&["CAP_KILL"])
        );
        assert_eq!(resolve(&s(&["all"]), &[]).unwrap(), all());
        let e = resolve(&s(&["FOO"]), &[]).unwrap_err().0;
        assert!(e.starts_with("unknown capability \"FOO\""), "{e}");
    }
}
