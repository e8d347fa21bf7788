//! `strata create`: a container's config, state and directories from an image and the
//! run options, without starting it.

use std::path::PathBuf;

use crate::container::{self, ContainerConfig, Limits, Paths, ProcessSpec, State, Trace};
use crate::driver::{self, Driver};
use crate::store::Store;
use crate::util::{now_secs, random_id, write_json, Ctx, Result};
use crate::{err, image, layer};

/// Options of `strata run` (and `create`).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// --name.
    pub name: Option<String>,
    /// --rm.
    pub auto_remove: bool,
    /// -d.
    pub detach: bool,
    /// -i.
    pub interactive: bool,
    /// -t.
    pub tty: bool,
    /// -e K=V (or K to copy the host's value).
    pub env: Vec<String>,
    /// -w.
    pub workdir: Option<String>,
    /// -u.
    pub user: Option<String>,
    /// -h.
    pub hostname: Option<String>,
    /// -v SRC:DST[:ro].
    pub volumes: Vec<String>,
    // -- networking (issue 17) --
    /// --network host|none|bridge|NAME|container:NAME (empty: bridge).
    pub network: String,
    /// -p [IP:][HOST:]CONTAINER[/tcp|/udp].
    pub publish: Vec<String>,
    /// -P: publish the image's exposed ports.
    pub publish_all: bool,
    /// --ip on the container's network.
    pub ip: Option<String>,
    // -- end networking --
    /// --driver fuse|overlay|auto.
    pub driver: String,
    /// --memory 64m.
    pub memory: Option<String>,
    /// --pids-limit.
    pub pids_limit: Option<i64>,
    /// --cpus.
    pub cpus: Option<f64>,
    /// --trace FILE: trace the root's filesystem requests (fuse driver).
    pub trace: Option<PathBuf>,
    /// --trace-ops read,write,...
    pub trace_ops: Option<String>,
    /// --trace-path GLOB.
    pub trace_path: Option<String>,
    /// --cap-add, --cap-drop, --security-opt, --privileged, --device.
    pub security: crate::isolation::security::SecurityOptions,
    /// --mount type=bind|volume|tmpfs,...
    pub mounts: Vec<String>,
    /// --tmpfs PATH[:opts].
    pub tmpfs: Vec<String>,
    /// --env-file FILE (KEY=VALUE lines, # comments).
    pub env_files: Vec<PathBuf>,
    /// --entrypoint (an empty string clears the image's).
    pub entrypoint: Option<String>,
    /// --label K=V.
    pub labels: Vec<String>,
    /// --ulimit NAME=SOFT[:HARD].
    pub ulimits: Vec<String>,
    /// --cpuset-cpus.
    pub cpuset_cpus: Option<String>,
    /// --cpuset-mems.
    pub cpuset_mems: Option<String>,
    /// --restart no|on-failure[:N]|always|unless-stopped.
    pub restart: Option<String>,
    /// --group-add.
    pub group_add: Vec<String>,
    /// --add-host NAME:IP.
    pub add_hosts: Vec<String>,
    /// --dns IP.
    pub dns: Vec<String>,
    /// --init, --read-only, --stop-signal, --stop-timeout.
    pub init: bool,
    /// --read-only.
    pub read_only: bool,
    /// --stop-signal.
    pub stop_signal: Option<String>,
    /// --stop-timeout.
    pub stop_timeout: Option<u64>,
    /// IMAGE.
    pub image: String,
    /// CMD...
    pub cmd: Vec<String>,
}

/// Parse `--memory`: one of strata's sizes (docker's: `64m`, `1g`, `512kb`, `1.5g`, see
/// [`strata_fs::config::size::parse_size`]), which must be positive.
pub fn parse_memory(s: &str) -> Result<u64> {
    match strata_fs::config::size::parse_size(s) {
        Some(0) => Err(err!("invalid size {s:?}: must be positive")),
        Some(n) => Ok(n),
        None if s.trim().starts_with('-') => Err(err!("invalid size {s:?}: must be positive")),
        None => Err(err!("invalid size {s:?}: use a number with k, m or g")),
    }
}

/// The container's trace settings from `--trace`, `--trace-ops` and `--trace-path`.
fn trace_spec(o: &RunOptions) -> Result<Option<Trace>> {
    let Some(file) = &o.trace else {
        if o.trace_ops.is_some() || o.trace_path.is_some() {
            return Err(err!("--trace-ops and --trace-path need --trace FILE"));
        }
        return Ok(None);
    };
    let file = if file.is_absolute() {
        file.clone()
    } else {
        std::env::current_dir()
            .ctx(|| "cannot find the current directory for --trace")?
            .join(file)
    };
    let name = file.to_string_lossy();
    if name.contains(',') {
        return Err(err!(
            "the trace file {name} contains ',' (it separates mount options): pick another path"
        ));
    }
    match file.parent() {
        Some(d) if d.is_dir() => {}
        _ => {
            return Err(err!(
                "cannot write the trace to {name}: its directory does not exist"
            ))
        }
    }
    let ops = o
        .trace_ops
        .as_deref()
        .unwrap_or_default()
        .split([',', ':'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join(":");
    let path = o.trace_path.clone().unwrap_or_default();
    if path.contains(',') {
        return Err(err!(
            "--trace-path {path:?} contains ',' (it separates mount options): match without it"
        ));
    }
    Ok(Some(Trace { file, ops, path }))
}

/// Create a container (config, state and directories) from an image, without starting it.
pub fn create(store: &Store, o: &RunOptions) -> Result<ContainerConfig> {
    let limits = Limits {
        memory: o.memory.as_deref().map(parse_memory).transpose()?,
        pids: o.pids_limit,
        cpus: o.cpus,
        cpuset_cpus: o.cpuset_cpus.clone(),
        cpuset_mems: o.cpuset_mems.clone(),
    };
    if limits.cpus.is_some_and(|c| c <= 0.0) {
        return Err(err!("--cpus must be positive"));
    }
    if limits.pids.is_some_and(|p| p <= 0) {
        return Err(err!("--pids-limit must be positive"));
    }
    if crate::isolation::rootless::in_userns() || crate::isolation::rootless::needed() {
        let asked: Vec<&str> = [
            ("--memory", limits.memory.is_some()),
            ("--pids-limit", limits.pids.is_some()),
            ("--cpus", limits.cpus.is_some()),
            ("--cpuset-cpus", limits.cpuset_cpus.is_some()),
            ("--cpuset-mems", limits.cpuset_mems.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(n, _)| *n)
        .collect();
        if !asked.is_empty() {
            return Err(err!(
                "{} cannot be applied rootless: the cgroup hierarchies are not delegated to unprivileged users here; run as root or drop the limit",
                asked.join(", ")
            ));
        }
    }
    let trace = trace_spec(o)?;
    let security = crate::isolation::security::resolve(&o.security)?;
    let mut extras = super::options::extras(o)?;
    let mut env_from_files = Vec::new();
    for f in &o.env_files {
        env_from_files.extend(super::options::read_env_file(f)?);
    }
    let _lock = store.lock_exclusive()?;
    let image_id = image::resolve(store, &o.image)?;
    let img = image::load_image(store, &image_id)?;
    let layers = img.layer_hexes();
    layer::check_present(store, &layers)?;
    let lazy = crate::layer::lazy::any_lazy(store, &layers);
    // A lazy layer's files are placeholders only strata's union fills: `auto` means fuse.
    let native = crate::layer::native::any_native(store, &layers) || lazy;
    let (driver, driver_reason) = match &trace {
        Some(_) => driver::choose_traced(store, &o.driver, native)?,
        None => driver::choose(store, &o.driver, native)?,
    };
    if driver == Driver::Overlay && lazy {
        return Err(err!(
            "image {} is lazily pulled and kernel overlayfs cannot fetch its files: use --driver fuse, or `strata pull` it first",
            o.image
        ));
    }
    if driver == Driver::Overlay && native {
        // Once per native layer, cached for every later container (docs/commit.md).
        crate::layer::plain::materialize_all(store, &layers)?;
    }

    let id = random_id()?;
    let existing = container::list_readable(store)?;
    let name = match &o.name {
        Some(n) => {
            let ok = !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(err!(
                    "invalid container name {n:?}: use letters, digits and _ . -"
                ));
            }
            if existing.iter().any(|c| &c.name == n) {
                return Err(err!("the container name {n:?} is already in use: remove it (strata rm) or pick another --name"));
            }
            n.clone()
        }
        None => container::generate_name(&id),
    };
    let mut args: Vec<String> = match &o.entrypoint {
        // docker: --entrypoint is one program, and it drops the image's CMD too.
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => img.config.entrypoint.clone().unwrap_or_default(),
    };
    if o.cmd.is_empty() && o.entrypoint.is_none() {
        args.extend(img.config.cmd.clone().unwrap_or_default());
    } else {
        args.extend(o.cmd.iter().cloned());
    }
    if args.is_empty() {
        return Err(err!(
            "no command given and the image {} has no CMD: add one after the image name",
            o.image
        ));
    }
    let mut env = img.config.env.clone().unwrap_or_default();
    for e in env_from_files.iter().chain(&o.env) {
        let kv = match e.split_once('=') {
            Some(_) => e.clone(),
            None => match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue,
            },
        };
        let key = kv.split('=').next().unwrap_or_default().to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    let cwd = o
        .workdir
        .clone()
        .or_else(|| img.config.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(err!("the working directory {cwd:?} must be absolute"));
    }
    let image_volumes: Vec<String> = img
        .config
        .volumes
        .as_ref()
        .map(|v| v.keys().cloned().collect())
        .unwrap_or_default();
    let mounts =
        crate::volume::mounts::parse(store, &o.volumes, &o.mounts, &o.tmpfs, &image_volumes)?;
    extras.tmpfs = mounts.tmpfs;
    if extras.stop_signal.is_none() {
        // docker: the image's STOPSIGNAL when --stop-signal is not given.
        extras.stop_signal = img
            .config
            .stop_signal
            .clone()
            .filter(|s| crate::container::parse_signal(s).is_ok());
    }
    // Networking (issue 17): the mode, ports and addresses, under the store lock.
    let exposed = img.config.exposed_ports.clone().unwrap_or_default();
    let (network, ports) = crate::network::at_create(
        store,
        &id,
        &crate::network::Request {
            network: &o.network,
            publish: &o.publish,
            publish_all: o.publish_all.then(|| exposed.keys().cloned().collect()),
            ip: o.ip.as_deref(),
        },
    )?;
    let cfg = ContainerConfig {
        id: id.clone(),
        name,
        image: o.image.clone(),
        image_id,
        layers,
        created: now_secs(),
        driver: driver.name().into(),
        driver_reason,
        process: ProcessSpec {
            args,
            env,
            cwd,
            user: o
                .user
                .clone()
                .or_else(|| img.config.user.clone())
                .unwrap_or_default(),
            tty: o.tty,
            interactive: o.interactive,
        },
        hostname: o.hostname.clone().unwrap_or_else(|| id[..12].to_string()),
        network,
        ports,
        volumes: mounts.volumes,
        limits,
        auto_remove: o.auto_remove,
        trace,
        security,
        extras,
    };
    let p = Paths::new(store, &id);
    let written = (|| {
        for d in [p.dir.clone(), p.upper(), p.work(), p.merged()] {
            std::fs::create_dir_all(&d).ctx(|| format!("cannot create {}", d.display()))?;
        }
        write_json(&p.state(), &State::created())?;
        // config.json last: a directory without it is not a container (ignored, removable).
        write_json(&p.config(), &cfg)
    })();
    if let Err(e) = written {
        // Nothing happened: the volumes and addresses go back, the directory goes.
        crate::volume::remove_anonymous(store, &cfg.volumes);
        let _ = crate::network::release(store, &id);
        let _ = std::fs::remove_dir_all(&p.dir);
        return Err(e);
    }
    super::events::record(store, "create", &cfg, &[]);
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::parse_memory;

    #[test]
    fn memory_sizes_and_messages() {
        assert_eq!(parse_memory("64m").ok(), Some(64 << 20));
        assert_eq!(parse_memory("1.5g").ok(), Some(3 << 29));
        assert_eq!(parse_memory("512kb").ok(), Some(512 << 10));
        let e = |s| {
            parse_memory(s)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(e("0"), "invalid size \"0\": must be positive");
        assert_eq!(e("-1m"), "invalid size \"-1m\": must be positive");
        assert_eq!(
            e("lots"),
            "invalid size \"lots\": use a number with k, m or g"
        );
    }
}
