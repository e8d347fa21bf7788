//! A container's security settings, docker's flags for them (`--cap-add`, `--cap-drop`,
//! `--security-opt`, `--privileged`, `--device`) checked when the container is created, and
//! applying them in the container's init and in `strata exec`'s process.

use std::path::{Path, PathBuf};

use caps::CapsHashSet;

use crate::err;
use crate::isolation::{caps as capset, seccomp, seccomp_profile};
use crate::spec::{Device, Seccomp, Security};
use crate::util::Result;

/// The security flags of `run`/`create`, as given.
#[derive(Debug, Clone, Default)]
pub struct SecurityOptions {
    /// --cap-add NAME|ALL.
    pub cap_add: Vec<String>,
    /// --cap-drop NAME|ALL.
    pub cap_drop: Vec<String>,
    /// --security-opt seccomp=FILE|unconfined, no-new-privileges[=true|false], label=...,
    /// apparmor=...
    pub security_opt: Vec<String>,
    /// --privileged.
    pub privileged: bool,
    /// --device HOST[:CONTAINER[:PERMS]].
    pub devices: Vec<String>,
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(err!("invalid --security-opt {key}={v}: use true or false")),
    }
}

fn seccomp_from_file(path: &str) -> Result<Seccomp> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err!("cannot read the seccomp profile {path}: {e}"))?;
    let p = seccomp_profile::parse(&text, path)?;
    // Compile once now: a profile libseccomp refuses fails here, not at start.
    let names = capset::names_of(&capset::set_of(&capset::DEFAULT.map(String::from), true));
    seccomp::build(&p, &names).map_err(|e| err!("seccomp profile {path}: {}", e.0))?;
    Ok(Seccomp::Profile(text))
}

/// `--device /dev/fuse`, `/dev/sda:/dev/xvda:r`: docker's syntax.
pub fn parse_device(s: &str) -> Result<Device> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, container, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, c] if c.starts_with('/') => (*h, *c, "rwm"),
        [h, p] => (*h, *h, *p),
        [h, c, p] => (*h, *c, *p),
        _ => return Err(err!("invalid --device {s:?}: use HOST[:CONTAINER[:PERMS]]")),
    };
    if perms.is_empty() || !perms.chars().all(|c| "rwm".contains(c)) {
        return Err(err!(
            "invalid --device {s:?}: permissions {perms:?} must be letters of rwm"
        ));
    }
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(err!("invalid --device {s:?}: both paths must be absolute"));
    }
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(host).map_err(|e| err!("cannot use --device {host}: {e}"))?;
    let ft = meta.file_type();
    if !ft.is_char_device() && !ft.is_block_device() {
        return Err(err!("--device {host} is not a device node"));
    }
    Ok(Device {
        host: PathBuf::from(host),
        container: container.to_string(),
        perms: perms.to_string(),
    })
}

/// Check the flags and turn them into the container's settings (nothing is created when
/// this fails).
pub fn resolve(o: &SecurityOptions) -> Result<Security> {
    let mut s = Security {
        privileged: o.privileged,
        ..Security::default()
    };
    for opt in &o.security_opt {
        // docker accepts "key=value" and the older "key:value".
        let (k, v) = opt
            .split_once('=')
            .or_else(|| opt.split_once(':'))
            .unwrap_or((opt.as_str(), ""));
        match k {
            "seccomp" if v == "unconfined" => s.seccomp = Seccomp::Unconfined,
            "seccomp" if v.is_empty() => {
                return Err(err!("--security-opt seccomp needs a value: a profile file or unconfined"))
            }
            "seccomp" if v == "builtin" => s.seccomp = Seccomp::Default,
            "seccomp" => s.seccomp = seccomp_from_file(v)?,
            "no-new-privileges" => s.new_privileges = !parse_bool(k, v)?,
            "label" if v == "disable" || !selinux_enabled() && v.is_empty() => {}
            "label" if !selinux_enabled() => {
                return Err(err!(
                    "--security-opt label={v}: SELinux is not enabled on this host, so there is no label to set (label=disable is accepted)"
                ))
            }
            "label" => {
                return Err(err!(
                    "--security-opt label={v}: strata does not set SELinux labels (label=disable is accepted)"
                ))
            }
            "apparmor" if v == "unconfined" => {}
            "apparmor" if !apparmor_enabled() => {
                return Err(err!(
                    "--security-opt apparmor={v}: AppArmor is not enabled on this host (apparmor=unconfined is accepted)"
                ))
            }
            "apparmor" => {
                return Err(err!(
                    "--security-opt apparmor={v}: strata does not load AppArmor profiles (apparmor=unconfined is accepted)"
                ))
            }
            _ => {
                return Err(err!(
                    "unknown --security-opt {opt:?}: use seccomp=FILE|unconfined, no-new-privileges[=true|false], label=disable or apparmor=unconfined"
                ))
            }
        }
    }
    let caps = capset::resolve(&o.cap_add, &o.cap_drop)?;
    if caps != capset::resolve(&[], &[])? {
        s.caps = Some(caps);
    }
    if o.privileged {
        s.caps = Some(capset::all());
        s.seccomp = Seccomp::Unconfined;
    }
    s.devices = o
        .devices
        .iter()
        .map(|d| parse_device(d))
        .collect::<Result<_>>()?;
    Ok(s)
}

/// The container's capability names.
pub fn cap_names(s: &Security) -> Vec<String> {
    s.caps
        .clone()
        .unwrap_or_else(|| capset::DEFAULT.map(String::from).to_vec())
}

/// What `apply` leaves for after the switch to the container's user (caps::finish).
pub struct Applied {
    /// effective = permitted = this after setuid.
    pub caps: CapsHashSet,
}

/// What [`apply_prepared`] installs, computed by the supervisor before the fork (the
/// seccomp program from the store's cache: compiling it is the slow part of a start's
/// security setup).
pub struct Prepared {
    caps: CapsHashSet,
    bpf: Option<Vec<u8>>,
}

/// The container's capability set and seccomp program (compiled once per profile and
/// capability set into the store's `cache/seccomp`), nothing installed yet. `mknod`: keep
/// CAP_MKNOD (see caps::set_of).
pub fn prepare(store: &crate::store::Store, s: &Security, mknod: bool) -> Result<Prepared> {
    let cache = store.root.join("cache/seccomp");
    let caps = capset::set_of(&cap_names(s), mknod || s.privileged);
    let text = match &s.seccomp {
        Seccomp::Unconfined => None,
        Seccomp::Default => Some(seccomp_profile::DEFAULT_JSON),
        Seccomp::Profile(text) => Some(text.as_str()),
    };
    let bpf = match text {
        None => None,
        Some(t) => {
            let what = match s.seccomp {
                Seccomp::Default => "default",
                _ => "of the container",
            };
            let profile = seccomp_profile::parse(t, what)?;
            Some(seccomp::compiled(
                &cache,
                t,
                &profile,
                &capset::names_of(&caps),
            )?)
        }
    };
    Ok(Prepared { caps, bpf })
}

/// In a forked child about to become (or start) the container's process, what [`prepare`]
/// computed: seccomp, the bounding set and no_new_privs, ordered as runc does. Without
/// no_new_privs the filter goes first, while the process still has CAP_SYS_ADMIN (which
/// loading it then needs); with it, last.
pub fn apply_prepared(s: &Security, p: Prepared) -> Result<Applied> {
    let Prepared { caps, bpf } = p;
    if s.new_privileges {
        if let Some(b) = &bpf {
            seccomp::load_compiled(b)?;
        }
    }
    capset::bound(&caps)?;
    if !s.new_privileges {
        nix::sys::prctl::set_no_new_privs().map_err(|e| err!("cannot set no_new_privs: {e}"))?;
        if let Some(b) = &bpf {
            seccomp::load_compiled(b)?;
        }
    }
    Ok(Applied { caps })
}
