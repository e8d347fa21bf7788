//! docker's JSON shapes: `inspect` of a container and the rows `ps`, `images` and `history`
//! hand to `--format`, with docker's field names so scripts written for docker work.

use serde_json::{json, Value};
use strata_runtime::container::{self, ContainerConfig, State, Status};
use strata_runtime::image;
use strata_runtime::image::commands as images;
use strata_runtime::store::Store;
use strata_runtime::util::{ago, human_size, rfc3339};

/// RFC 3339 with nanoseconds, as docker prints times (strata records whole seconds).
pub fn rfc3339_nano(secs: i64) -> String {
    rfc3339(secs).replace('Z', ".000000000Z")
}

/// docker's zero time, for a container that never started or never finished.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn time_or_zero(t: Option<i64>) -> String {
    t.map(rfc3339_nano).unwrap_or_else(|| ZERO_TIME.into())
}

/// `State.Status` as docker spells it (a frozen cgroup reads as paused).
pub fn status_word(cfg: &ContainerConfig, st: &State) -> &'static str {
    match st.status {
        Status::Created => "created",
        Status::Running if strata_runtime::container::pause::is_paused(&cfg.id) => "paused",
        Status::Running => "running",
        Status::Exited => "exited",
    }
}

/// `ps`'s STATUS column: `Up 5 minutes`, `Exited (3) 2 hours ago`, `Created`.
pub fn status_text(cfg: &ContainerConfig, st: &State) -> String {
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}{}",
            ago(st.started_at.unwrap_or(0)).trim_end_matches(" ago"),
            if status_word(cfg, st) == "paused" {
                " (Paused)"
            } else {
                ""
            }
        ),
        // Between two runs of a restart policy: the supervisor waits to start it again.
        Status::Exited if st.supervisor.is_some() => format!(
            "Restarting ({}) {}",
            st.exit_code.unwrap_or(0),
            ago(st.finished_at.unwrap_or(0))
        ),
        Status::Exited => format!(
            "Exited ({}) {}",
            st.exit_code.unwrap_or(0),
            ago(st.finished_at.unwrap_or(0))
        ),
    }
}

fn mounts(cfg: &ContainerConfig) -> Vec<Value> {
    cfg.volumes
        .iter()
        .map(|v| {
            json!({
                "Type": if v.volume.is_some() || v.anonymous { "volume" } else { "bind" },
                "Name": v.volume,
                "Source": v.source,
                "Destination": v.target,
                "Mode": if v.readonly { "ro" } else { "" },
                "RW": !v.readonly,
                "Propagation": "rprivate",
            })
        })
        .collect()
}

/// One `ps` row: docker's `--format` fields.
pub fn ps_row(cfg: &ContainerConfig, st: &State, no_trunc: bool) -> Value {
    let id = if no_trunc {
        cfg.id.clone()
    } else {
        cfg.id.chars().take(12).collect()
    };
    let full = cfg.process.args.join(" ");
    let command = if no_trunc {
        format!("\"{full}\"")
    } else if full.chars().count() > 20 {
        format!("\"{}…\"", full.chars().take(19).collect::<String>())
    } else {
        format!("\"{full}\"")
    };
    let mounts: Vec<String> = cfg.volumes.iter().map(|v| v.target.clone()).collect();
    json!({
        "ID": id,
        "Image": cfg.image,
        "Command": command,
        "CreatedAt": rfc3339(cfg.created).replace('T', " ").replace('Z', " +0000 UTC"),
        "RunningFor": ago(cfg.created),
        // As docker's: a stopped container publishes nothing.
        "Ports": if st.status == Status::Running {
            cfg.ports.iter().map(strata_runtime::network::ports::text).collect::<Vec<_>>().join(", ")
        } else {
            String::new()
        },
        "State": status_word(cfg, st),
        "Status": status_text(cfg, st),
        "Size": "0B",
        "Names": cfg.name,
        "Labels": cfg.extras.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        "Mounts": mounts.join(","),
        "Networks": cfg.network,
    })
}

/// Column names of `ps --format 'table ...'` for each field.
pub const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("RunningFor", "CREATED"),
    ("CreatedAt", "CREATED AT"),
];

/// docker's default `ps` table.
pub const PS_TABLE: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// One `images` row.
pub fn image_row(row: &images::ImageRow, no_trunc: bool) -> Value {
    let (repo, tag) = match &row.reference {
        Some(r) => (r.name.clone(), r.tag.clone()),
        None => ("<none>".into(), "<none>".into()),
    };
    let id = if no_trunc {
        row.id.clone()
    } else {
        image::short_id(&row.id).to_string()
    };
    json!({
        "ID": id,
        "Repository": repo,
        "Tag": tag,
        "Digest": "<none>",
        "CreatedSince": ago(row.created),
        "CreatedAt": rfc3339(row.created).replace('T', " ").replace('Z', " +0000 UTC"),
        "Size": human_size(row.size),
    })
}

/// Column names of `images --format 'table ...'`.
pub const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
];

/// docker's default `images` table.
pub const IMAGE_TABLE: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

/// One `history` row.
pub fn history_row(r: &images::HistoryRow, no_trunc: bool) -> Value {
    let by = if no_trunc || r.created_by.chars().count() <= 45 {
        r.created_by.clone()
    } else {
        format!("{}…", r.created_by.chars().take(44).collect::<String>())
    };
    json!({
        "ID": r.id,
        "CreatedSince": ago(r.created),
        "CreatedAt": rfc3339(r.created),
        "CreatedBy": by,
        "Size": human_size(r.size),
        "Comment": r.comment,
    })
}

/// Column names of `history --format 'table ...'`.
pub const HISTORY_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
];

/// docker's default `history` table.
pub const HISTORY_TABLE: &str =
    "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";

/// `strata inspect` of a container, in docker's shape; strata's own details (driver
/// reason, branch directories, log path) under `Strata`.
pub fn inspect_container(store: &Store, id: &str) -> strata_runtime::Result<Value> {
    let cfg = container::load_config(store, id)?;
    let st = container::reconcile(store, id)?;
    let paths = container::Paths::new(store, id);
    let status = status_word(&cfg, &st);
    let args: Vec<String> = cfg.process.args.iter().skip(1).cloned().collect();
    let mem = cfg.limits.memory.unwrap_or(0);
    let nano_cpus = cfg.limits.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0);
    Ok(json!({
        "Id": cfg.id,
        "Created": rfc3339_nano(cfg.created),
        "Path": cfg.process.args.first().cloned().unwrap_or_default(),
        "Args": args,
        "State": {
            "Status": status,
            "Running": st.status == Status::Running,
            "Paused": status == "paused",
            "Restarting": st.status == Status::Exited && st.supervisor.is_some(),
            "OOMKilled": false,
            "Dead": false,
            "Pid": if st.status == Status::Running { st.pid.unwrap_or(0) } else { 0 },
            "ExitCode": st.exit_code.unwrap_or(0),
            "Error": st.error.clone().unwrap_or_default(),
            "StartedAt": time_or_zero(st.started_at),
            "FinishedAt": time_or_zero(st.finished_at),
        },
        "Image": cfg.image_id,
        "ResolvConfPath": paths.init_layer().join("etc/resolv.conf"),
        "HostnamePath": paths.init_layer().join("etc/hostname"),
        "HostsPath": paths.init_layer().join("etc/hosts"),
        "LogPath": paths.log(),
        "Name": format!("/{}", cfg.name),
        "RestartCount": st.restart_count,
        "Driver": cfg.driver,
        "Platform": "linux",
        "HostConfig": {
            "Binds": cfg.volumes.iter().map(|v| format!(
                "{}:{}{}", v.source.display(), v.target, if v.readonly { ":ro" } else { "" }
            )).collect::<Vec<_>>(),
            "NetworkMode": cfg.network,
            "AutoRemove": cfg.auto_remove,
            "Memory": mem,
            "NanoCpus": nano_cpus,
            "PidsLimit": cfg.limits.pids,
            "RestartPolicy": {
                "Name": if cfg.extras.restart.name.is_empty() { "no" } else { cfg.extras.restart.name.as_str() },
                "MaximumRetryCount": cfg.extras.restart.max_retries,
            },
            "ReadonlyRootfs": cfg.extras.read_only,
            "Init": cfg.extras.init,
            "Dns": cfg.extras.dns,
            "ExtraHosts": cfg.extras.add_hosts,
            "GroupAdd": cfg.extras.group_add,
            "Tmpfs": cfg.extras.tmpfs.iter().map(|t| (t.target.clone(), json!(t.options))).collect::<serde_json::Map<_, _>>(),
            "CpusetCpus": cfg.limits.cpuset_cpus.clone().unwrap_or_default(),
            "CpusetMems": cfg.limits.cpuset_mems.clone().unwrap_or_default(),
        },
        "GraphDriver": {
            "Name": cfg.driver,
            "Data": {
                "UpperDir": paths.upper(),
                "WorkDir": paths.work(),
                "MergedDir": paths.merged(),
                "LowerDir": container::lower_dirs(store, &cfg).iter()
                    .map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"),
            }
        },
        "Mounts": mounts(&cfg),
        "Config": {
            "Hostname": cfg.hostname,
            "User": cfg.process.user,
            "AttachStdin": cfg.process.interactive,
            "Tty": cfg.process.tty,
            "OpenStdin": cfg.process.interactive,
            "Env": cfg.process.env,
            "Cmd": cfg.process.args,
            "Image": cfg.image,
            "WorkingDir": cfg.process.cwd,
            "Entrypoint": Value::Null,
            "Labels": cfg.extras.labels,
            "StopSignal": cfg.extras.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
            "StopTimeout": cfg.extras.stop_timeout,
        },
        "NetworkSettings": network_settings(store, &cfg),
        "Strata": {
            "DriverReason": cfg.driver_reason,
            "LowerDirs": cfg.layers.iter().rev().map(|h| store.layer_dir(h)).collect::<Vec<_>>(),
            "State": st,
            "Config": cfg,
        },
    }))
}

/// docker's NetworkSettings: each network's address and gateway, the published ports.
fn network_settings(store: &Store, cfg: &ContainerConfig) -> Value {
    let nets = strata_runtime::network::records::memberships(store, &cfg.id, &cfg.network)
        .unwrap_or_default();
    let mut networks = serde_json::Map::new();
    for (n, ip) in &nets {
        networks.insert(
            n.name.clone(),
            json!({
                "NetworkID": n.id, "IPAddress": ip.to_string(), "IPPrefixLen": n.prefix(),
                "Gateway": n.gateway,
            }),
        );
    }
    if nets.is_empty() {
        networks.insert(cfg.network.clone(), json!({}));
    }
    let mut ports = serde_json::Map::new();
    for p in &cfg.ports {
        let key = format!("{}/{}", p.container_port, p.proto);
        let entry = ports.entry(key).or_insert_with(|| json!([]));
        if let Some(a) = entry.as_array_mut() {
            a.push(json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()}));
        }
    }
    let (ip, gw) = nets
        .first()
        .map(|(n, ip)| (ip.to_string(), n.gateway.clone()))
        .unwrap_or_default();
    json!({ "Networks": networks, "Ports": ports, "IPAddress": ip, "Gateway": gw })
}

/// An image's `inspect` in docker's shape: the runtime's fields plus those docker always has.
pub fn docker_image(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        for (k, d) in [
            ("RepoDigests", json!([])),
            ("Parent", json!("")),
            ("Comment", json!("")),
            ("Author", json!("")),
            ("Metadata", json!({ "LastTagTime": ZERO_TIME })),
        ] {
            o.entry(k).or_insert(d);
        }
        if let Some(id) = o.get("Id").and_then(Value::as_str) {
            if !id.starts_with("sha256:") {
                let full = format!("sha256:{id}");
                o.insert("Id".into(), json!(full));
            }
        }
    }
    v
}
