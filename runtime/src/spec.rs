//! A container's spec: its config.json (what to run, fixed at creation), where its files
//! are, and reading the configs of the store's containers. Every part of the runtime reads
//! it (isolation, the process, the driver, layers, images), so it depends only on the store.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::err;
use crate::store::Store;
use crate::util::{read_json, Ctx, Result};

/// A bind mount into the container: a host path, or a volume's data directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Volume {
    /// Absolute host path.
    pub source: PathBuf,
    /// Absolute path in the container.
    pub target: String,
    /// Mounted read-only.
    pub readonly: bool,
    /// The named volume (store/volumes/NAME) this mount is, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// An anonymous volume (`-v /data`, an image VOLUME): removed with the container
    /// (`rm -v`, `--rm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

impl Volume {
    /// A plain bind mount of a host path.
    pub fn bind(source: PathBuf, target: &str, readonly: bool) -> Volume {
        Volume {
            source,
            target: target.to_string(),
            readonly,
            volume: None,
            anonymous: false,
        }
    }
}

/// A tmpfs mounted in the container (`--tmpfs PATH[:opts]`, `--mount type=tmpfs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tmpfs {
    /// Absolute path in the container.
    pub target: String,
    /// Mount options (size=64m,mode=1777).
    pub options: String,
}

/// A resource limit (`--ulimit NAME=SOFT[:HARD]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ulimit {
    /// docker's name: nofile, nproc, core, stack, ...
    pub name: String,
    /// Soft limit (-1: unlimited).
    pub soft: i64,
    /// Hard limit (-1: unlimited).
    pub hard: i64,
}

/// When the supervisor starts the command again after it exits (`--restart`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RestartPolicy {
    /// "no", "on-failure", "always" or "unless-stopped".
    pub name: String,
    /// on-failure:N: at most N restarts (0: no bound).
    #[serde(default)]
    pub max_retries: u32,
}

/// The docker options that shape the container beyond its process (all optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Extras {
    /// Put strata's small init (a reaper forwarding signals) in front of the command.
    #[serde(default)]
    pub init: bool,
    /// The signal `stop` sends first (default SIGTERM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    /// Labels (`--label K=V`).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The root filesystem mounted read-only.
    #[serde(default)]
    pub read_only: bool,
    /// tmpfs mounts.
    #[serde(default)]
    pub tmpfs: Vec<Tmpfs>,
    /// Resource limits.
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
    /// Extra groups of the process (names or numbers).
    #[serde(default)]
    pub group_add: Vec<String>,
    /// Extra /etc/hosts lines, "NAME:IP".
    #[serde(default)]
    pub add_hosts: Vec<String>,
    /// DNS servers for /etc/resolv.conf.
    #[serde(default)]
    pub dns: Vec<String>,
    /// Restart policy.
    #[serde(default)]
    pub restart: RestartPolicy,
}

/// cgroup limits.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// Maximum number of tasks.
    pub pids: Option<i64>,
    /// CPU quota in CPUs (0.5 = half a CPU).
    pub cpus: Option<f64>,
    /// CPUs the container may use (cpuset.cpus syntax: 0-1,3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use (cpuset.mems syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset_mems: Option<String>,
}

/// Op-by-op tracing of a container's root (strata's FUSE union only; docs/tracing.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Trace {
    /// Absolute path of the trace file (rewritten at each start).
    pub file: PathBuf,
    /// Ops to trace, ':'-separated as in the mount option; empty for all.
    #[serde(default)]
    pub ops: String,
    /// Path glob (`--trace-path`); empty for all paths.
    #[serde(default)]
    pub path: String,
}

/// A host device node given to the container (`--device`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Device {
    /// The node on the host.
    pub host: PathBuf,
    /// Where it appears in the container.
    pub container: String,
    /// Of "rwm": read, write, mknod (the device cgroup's permissions).
    pub perms: String,
}

/// The seccomp filter of a container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Seccomp {
    /// strata's default profile (docker's default behaviour).
    #[default]
    Default,
    /// No filter (`--security-opt seccomp=unconfined`, `--privileged`).
    Unconfined,
    /// A profile in docker's JSON format, as read at creation.
    Profile(String),
}

/// Capabilities, seccomp, no_new_privs and devices (docker's security flags).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Security {
    /// The capabilities ("CAP_CHOWN", ...); None for docker's default set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caps: Option<Vec<String>>,
    /// The seccomp filter.
    pub seccomp: Seccomp,
    /// Leave no_new_privs unset (`--security-opt no-new-privileges=false`, docker's
    /// default); strata sets it unless told so, so setuid files cannot raise privileges.
    pub new_privileges: bool,
    /// `--privileged`: every capability, no seccomp, the host's devices, /sys writable.
    pub privileged: bool,
    /// `--device`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
}

/// The process a container runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// argv.
    pub args: Vec<String>,
    /// KEY=VALUE.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// USER[:GROUP] (names resolved in the container's /etc/passwd).
    pub user: String,
    /// Allocate a pty.
    pub tty: bool,
    /// Keep stdin open.
    pub interactive: bool,
}

/// One published port: traffic to HOST_IP:HOST_PORT goes to the container's PORT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address it is published on ("0.0.0.0": every address).
    pub host_ip: String,
    /// The host port.
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
    /// "tcp" or "udp".
    pub proto: String,
}

/// Everything fixed when the container is created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    /// "sha256:<hex>".
    pub image_id: String,
    /// Layer diff_id hexes, bottom first (kept so the layers outlive a forced rmi).
    pub layers: Vec<String>,
    /// Seconds since the epoch.
    pub created: i64,
    /// "overlay" or "fuse".
    pub driver: String,
    /// Why this driver.
    #[serde(default)]
    pub driver_reason: String,
    /// What to run.
    pub process: ProcessSpec,
    /// UTS hostname.
    pub hostname: String,
    /// "host", "none", "bridge" (the default network), a user network's name, or
    /// "container:ID" (another container's network namespace).
    pub network: String,
    /// Published ports (`-p`, `-P`), host ports resolved at create.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    /// cgroup limits.
    pub limits: Limits,
    /// Remove when it exits (--rm).
    pub auto_remove: bool,
    /// Trace the root's filesystem requests (`run --trace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
    /// Capabilities, seccomp, devices.
    #[serde(default)]
    pub security: Security,
    /// docker's other run options (init, stop signal, labels, tmpfs, ...).
    #[serde(default)]
    pub extras: Extras,
}

impl ContainerConfig {
    /// The union's lower branches, top first: each image layer's directory as `branch`
    /// names it (the raw layer, or the driver's form of it), then the init layer (when the
    /// container has one) at the bottom, where it only fills in what the image lacks and
    /// leaves the layers' branch numbers alone.
    pub fn lower_branches(&self, store: &Store, branch: impl Fn(&str) -> PathBuf) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.layers.iter().rev().map(|h| branch(h)).collect();
        let init = Paths::new(store, &self.id).init_layer();
        if init.is_dir() {
            dirs.push(init);
        }
        dirs
    }
}

/// Paths of one container's files.
pub struct Paths {
    /// containers/<id>.
    pub dir: PathBuf,
}

impl Paths {
    /// Paths of container `id`.
    pub fn new(store: &Store, id: &str) -> Paths {
        Paths {
            dir: store.containers_dir().join(id),
        }
    }
    /// config.json.
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    /// state.json.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    /// The union's upper (writable) branch.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    /// The union's work directory.
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    /// Where the union is mounted while the container runs.
    pub fn merged(&self) -> PathBuf {
        self.dir.join("merged")
    }
    /// stdout and stderr of a detached container.
    pub fn log(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    /// The container's init layer: empty mount points for the files bound over /etc
    /// (hosts, resolv.conf, hostname), below the image's layers so that neither the upper
    /// nor `diff` and `commit` see them (docker's init layer).
    pub fn init_layer(&self) -> PathBuf {
        self.dir.join("init")
    }
}

/// Load a container's config.
pub fn load_config(store: &Store, id: &str) -> Result<ContainerConfig> {
    read_json(&Paths::new(store, id).config())
}

/// All container ids.
pub fn list_ids(store: &Store) -> Result<Vec<String>> {
    let dir = store.containers_dir();
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir)
        .ctx(|| format!("cannot list {}", dir.display()))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() == 64 && e.path().join("config.json").is_file() {
            out.push(name);
        }
    }
    Ok(out)
}

/// All containers' configs; fails if one cannot be read (what garbage collection needs).
pub fn list(store: &Store) -> Result<Vec<ContainerConfig>> {
    let mut out = Vec::new();
    for id in list_ids(store)? {
        out.push(load_config(store, &id)?);
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.created));
    Ok(out)
}

/// The containers whose config can be read; each unreadable one is reported on stderr, so
/// one damaged container does not hide the others.
pub fn list_readable(store: &Store) -> Result<Vec<ContainerConfig>> {
    readable(store, true)
}

fn readable(store: &Store, warn: bool) -> Result<Vec<ContainerConfig>> {
    let mut out = Vec::new();
    for id in list_ids(store)? {
        match load_config(store, &id) {
            Ok(c) => out.push(c),
            Err(e) if warn => {
                tracing::warn!("skipping container {}: {e}", &id[..12.min(id.len())])
            }
            Err(_) => {}
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.created));
    Ok(out)
}

/// "No such container", or, when some container's metadata cannot be read (it may be the
/// one asked for), that error, which names the file and what to do.
fn unreadable_hint(store: &Store, what: &str) -> crate::Error {
    let damaged = list_ids(store)
        .unwrap_or_default()
        .into_iter()
        .find_map(|id| load_config(store, &id).err());
    match damaged {
        Some(e) => err!("no readable container {what}; {}", e.0),
        None => err!("no such container: {what} (see `strata ps -a`)"),
    }
}

/// Resolve a name, full id or unique id prefix to a container id.
pub fn resolve(store: &Store, what: &str) -> Result<String> {
    let all = readable(store, false)?;
    if let Some(c) = all.iter().find(|c| c.id == what || c.name == what) {
        return Ok(c.id.clone());
    }
    let matches: Vec<&ContainerConfig> = all
        .iter()
        .filter(|c| !what.is_empty() && c.id.starts_with(what))
        .collect();
    match matches.as_slice() {
        [c] => Ok(c.id.clone()),
        [] => Err(unreadable_hint(store, what)),
        _ => Err(err!(
            "container id prefix {what} is ambiguous: give more digits or the name"
        )),
    }
}
