//! System-wide commands: `info`, `version`, `events`, `system df`, `system prune`, `login`,
//! `logout`.

use std::io::{BufRead, Write};
use std::time::Duration;

use clap::Subcommand;
use serde_json::json;
use strata_runtime::container::events::{self, Event};
use strata_runtime::container::{self, Status};
use strata_runtime::image::commands as images;
use strata_runtime::isolation::{cgroups, rootless};
use strata_runtime::store::Store;
use strata_runtime::transfer::auth::Creds;
use strata_runtime::transfer::login;
use strata_runtime::transfer::registry::Options;
use strata_runtime::util::{human_size, now_secs, parse_rfc3339};
use strata_runtime::{driver, err, image};

use crate::format::{render, Output};

type R = strata_runtime::Result<()>;

/// The system-wide commands.
#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Show strata's version, client and runtime (docker's layout).
    Version {
        /// Go template (`{{.Client.Version}}`, `{{.Server.Version}}`), or `json`.
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Show container lifecycle events (create, start, die, destroy, stop, kill, pause,
    /// unpause, rename, restart); follows new ones unless --until is given.
    Events {
        /// Events since this time (RFC 3339, Unix seconds, or a duration such as 10m ago).
        #[arg(long)]
        since: Option<String>,
        /// Events until this time (same forms), then exit.
        #[arg(long)]
        until: Option<String>,
        /// KEY=VALUE: container, event, image, type (several: all must match, one per key
        /// repeated: any).
        #[arg(short, long)]
        filter: Vec<String>,
        /// Go template (`{{.Action}} {{.Actor.Attributes.name}}`), or `json`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Disk use and clean-up of the store (`df`, `prune`).
    System {
        #[command(subcommand)]
        cmd: SystemSub,
    },
    /// Store credentials for a registry in docker's config.json, after checking them.
    Login {
        /// User name.
        #[arg(short, long)]
        username: Option<String>,
        /// Password (prefer --password-stdin).
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Registry HOST[:PORT] (default docker.io).
        server: Option<String>,
    },
    /// Remove a registry's credentials from docker's config.json.
    Logout {
        /// Registry HOST[:PORT] (default docker.io).
        server: Option<String>,
    },
}

/// `strata system ...`.
#[derive(Subcommand, Debug)]
pub enum SystemSub {
    /// Show how much disk images and containers use, and how much could be reclaimed.
    Df {
        /// Go template (fields: Type, TotalCount, Active, Size, Reclaimable), or `json`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove stopped containers and untagged images (-a: every image no container uses).
    Prune {
        /// Remove every unused image, not just untagged ones.
        #[arg(short, long)]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    /// Show information about the store (as `strata info`).
    Info {
        /// Go template, or `json`.
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Show events (as `strata events`).
    Events {
        /// Since (RFC 3339, Unix seconds, or a duration).
        #[arg(long)]
        since: Option<String>,
        /// Until (same forms).
        #[arg(long)]
        until: Option<String>,
        /// KEY=VALUE filters.
        #[arg(short, long)]
        filter: Vec<String>,
        /// Go template or `json`.
        #[arg(long)]
        format: Option<String>,
    },
}

/// Run one system command.
pub fn run(store: &Store, cmd: SystemCmd) -> R {
    match cmd {
        SystemCmd::Version { format } => version(format.as_deref()),
        SystemCmd::Events {
            since,
            until,
            filter,
            format,
        }
        | SystemCmd::System {
            cmd:
                SystemSub::Events {
                    since,
                    until,
                    filter,
                    format,
                },
        } => events_cmd(store, since, until, &filter, format.as_deref()),
        SystemCmd::System {
            cmd: SystemSub::Info { format },
        } => {
            if rootless::needed() {
                rootless::enter_new()?;
            }
            info(store, format.as_deref())
        }
        SystemCmd::System {
            cmd: SystemSub::Df { format },
        } => df(store, format.as_deref()),
        SystemCmd::System {
            cmd: SystemSub::Prune { all, force },
        } => {
            if rootless::needed() {
                rootless::enter_new()?;
            }
            prune(store, all, force, true, true)
        }
        SystemCmd::Login {
            username,
            password,
            password_stdin,
            server,
        } => {
            let server = server.unwrap_or_else(|| "docker.io".into());
            let user = username.ok_or_else(|| err!("login needs --username (-u)"))?;
            let pass = match (password, password_stdin) {
                (Some(p), false) => p,
                (None, true) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .map_err(|e| err!("cannot read the password from stdin: {e}"))?;
                    line.trim_end_matches(['\n', '\r']).to_string()
                }
                (Some(_), true) => {
                    return Err(err!("--password and --password-stdin are exclusive"))
                }
                (None, false) => {
                    return Err(err!("login needs --password-stdin or --password (-p)"))
                }
            };
            let path = login::login(&server, Creds { user, pass }, &Options::default())?;
            eprintln!("Credentials stored in {}", path.display());
            outln!("Login Succeeded");
            Ok(())
        }
        SystemCmd::Logout { server } => {
            let server = server.unwrap_or_else(|| "docker.io".into());
            if login::logout(&server)? {
                outln!("Removing login credentials for {server}");
            } else {
                outln!("Not logged in to {server}");
            }
            Ok(())
        }
    }
}

fn print_one(format: Option<&str>, v: &serde_json::Value) -> Option<R> {
    let f = format?;
    let text = if f.trim() == "json" {
        serde_json::to_string(v).unwrap_or_default()
    } else {
        match render(f, v) {
            Ok(t) => t,
            Err(e) => return Some(Err(strata_runtime::Error(e))),
        }
    };
    Some(crate::print_text(&text))
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn version(format: Option<&str>) -> R {
    let v = env!("CARGO_PKG_VERSION");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let doc = json!({
        "Client": { "Version": v, "ApiVersion": "strata", "Os": "linux", "Arch": arch(),
                    "Platform": { "Name": "strata" } },
        "Server": { "Version": v, "Os": "linux", "Arch": arch(), "KernelVersion": kernel,
                    "Platform": { "Name": "strata (no daemon: the runtime runs in each command)" },
                    "Components": [ { "Name": "Engine", "Version": v } ] },
    });
    if let Some(r) = print_one(format, &doc) {
        return r;
    }
    crate::print_text(&format!(
        "Client:\n Version:           {v}\n OS/Arch:           linux/{a}\n\nServer: strata (no daemon: the runtime runs in each command)\n Engine:\n  Version:          {v}\n  OS/Arch:          linux/{a}\n  Kernel Version:   {kernel}",
        a = arch()
    ))
}

/// `strata info`: the store, the storage driver and why, cgroups, counts.
pub fn info(store: &Store, format: Option<&str>) -> R {
    let (drv, reason) = driver::choose(store, "auto", false)?;
    let cg = match cgroups::version() {
        cgroups::Version::V1 => "1",
        cgroups::Version::V2 => "2",
    };
    let mut running = 0;
    let mut paused = 0;
    let mut stopped = 0;
    for c in container::list_readable(store)? {
        match container::reconcile(store, &c.id).map(|s| s.status) {
            Ok(Status::Running) if container::pause::is_paused(&c.id) => paused += 1,
            Ok(Status::Running) => running += 1,
            _ => stopped += 1,
        }
    }
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "linux".into());
    let doc = json!({
        "ID": "", "Name": nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        "Driver": drv.name(), "DriverStatus": [["Reason", reason]],
        "DockerRootDir": store.root, "CgroupVersion": cg, "CgroupDriver": "cgroupfs",
        "Containers": running + paused + stopped, "ContainersRunning": running,
        "ContainersPaused": paused, "ContainersStopped": stopped,
        "Images": image::list_image_ids(store)?.len(),
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "KernelVersion": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "OperatingSystem": os, "OSType": "linux", "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "Rootless": rootless::in_userns(),
        "Networking": strata_runtime::network::backend(),
    });
    if let Some(r) = print_one(format, &doc) {
        return r;
    }
    crate::print_text(&format!(
        "Store: {}\nStorage driver: {}\nDriver reason: {reason}\nCgroup version: v{cg}\nRootless: {}\nNetworking: {}\n\
         Native layers: commits of fuse containers keep their upper as it is (deltas, metadata-only copies, redirects); \
         auto runs their images on the fuse driver, --driver overlay mounts a plain copy of each native layer, materialized once (layers/ID.plain)\n\
         Images: {}\nContainers: {} (running {running}, paused {paused}, stopped {stopped})",
        store.root.display(),
        drv.name(),
        rootless::in_userns(),
        strata_runtime::network::backend(),
        doc["Images"],
        doc["Containers"],
    ))
}

/// A time as `--since`/`--until` take it: RFC 3339, Unix seconds, or a duration back from now.
fn parse_time(s: &str) -> strata_runtime::Result<i64> {
    if let Ok(n) = s.parse::<f64>() {
        return Ok(n as i64);
    }
    if let Some(t) = parse_rfc3339(s) {
        return Ok(t);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| {
        err!("invalid time {s:?}: use RFC 3339, Unix seconds, or a duration like 10m")
    })?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(err!("invalid time {s:?}: durations end in s, m or h")),
    };
    Ok(now_secs() - n * mult)
}

fn matches(e: &Event, filters: &[(String, String)]) -> bool {
    let mut keys: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.dedup();
    keys.iter().all(|k| {
        filters
            .iter()
            .filter(|(fk, _)| fk == k)
            .any(|(_, v)| match *k {
                "container" => {
                    e.actor.id.starts_with(v.as_str())
                        || e.actor.attributes.get("name").is_some_and(|n| n == v)
                }
                "event" | "status" => &e.action == v,
                "image" => &e.from == v,
                "type" => &e.kind == v,
                _ => false,
            })
    })
}

fn events_cmd(
    store: &Store,
    since: Option<String>,
    until: Option<String>,
    filter: &[String],
    format: Option<&str>,
) -> R {
    let since = since.as_deref().map(parse_time).transpose()?;
    let until = until.as_deref().map(parse_time).transpose()?;
    let mut filters = Vec::new();
    for f in filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| err!("invalid filter {f:?}: use KEY=VALUE"))?;
        if !["container", "event", "status", "image", "type"].contains(&k) {
            return Err(err!(
                "unknown filter {k:?}: strata filters on container, event, image, type"
            ));
        }
        filters.push((k.to_string(), v.to_string()));
    }
    filters.sort();
    let show = |e: &Event| -> R {
        let v = serde_json::to_value(e).map_err(|x| err!("cannot encode an event: {x}"))?;
        if let Some(r) = print_one(format, &v) {
            return r;
        }
        let attrs: Vec<String> = e
            .actor
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let nanos = e.time_nano.rem_euclid(1_000_000_000);
        let when = strata_runtime::util::rfc3339(e.time).replace('Z', &format!(".{nanos:09}Z"));
        crate::print_text(&format!(
            "{when} {} {} {} ({})",
            e.kind,
            e.action,
            e.actor.id,
            attrs.join(", ")
        ))
    };
    let (past, mut offset) = events::read_from(store, None);
    let keep = |e: &Event| {
        since.is_none_or(|s| e.time >= s)
            && until.is_none_or(|u| e.time <= u)
            && matches(e, &filters)
    };
    for e in past.iter().filter(|e| keep(e)) {
        show(e)?;
    }
    // Without --until, follow the log as docker streams events, until interrupted (or
    // until --until passes, when it is in the future).
    loop {
        if until.is_some_and(|u| now_secs() > u) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
        let (new, off) = events::read_from(store, Some(offset));
        offset = off;
        for e in new.iter().filter(|e| keep(e)) {
            show(e)?;
        }
        let _ = std::io::stdout().flush();
    }
}

fn dir_size(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    let mut budget = 1_000_000u32;
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            budget = budget.saturating_sub(1);
            if budget == 0 {
                return total;
            }
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

fn df(store: &Store, format: Option<&str>) -> R {
    let _lock = store.lock_shared()?;
    let ctrs = container::list_readable(store)?;
    let used: std::collections::HashSet<String> = ctrs.iter().map(|c| c.image_id.clone()).collect();
    let mut seen = std::collections::HashMap::new();
    for r in images::list(store)? {
        seen.insert(r.id.clone(), r.size);
    }
    drop(_lock);
    let img_size: u64 = seen.values().sum();
    let img_active = seen.keys().filter(|i| used.contains(*i)).count();
    let img_reclaim: u64 = seen
        .iter()
        .filter(|(i, _)| !used.contains(*i))
        .map(|(_, s)| s)
        .sum();
    let mut c_size = 0;
    let mut c_active = 0;
    let mut c_reclaim = 0;
    for c in &ctrs {
        let s = dir_size(&container::Paths::new(store, &c.id).upper());
        c_size += s;
        if container::reconcile(store, &c.id).is_ok_and(|st| st.status == Status::Running) {
            c_active += 1;
        } else {
            c_reclaim += s;
        }
    }
    let pct = |r: u64, t: u64| {
        (r * 100)
            .checked_div(t)
            .map(|p| format!(" ({p}%)"))
            .unwrap_or_default()
    };
    let rows = [
        ("Images", seen.len(), img_active, img_size, img_reclaim),
        ("Containers", ctrs.len(), c_active, c_size, c_reclaim),
        ("Local Volumes", 0, 0, 0, 0),
        ("Build Cache", 0, 0, 0, 0),
    ];
    let mut out = Output::new(
        format,
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
        &[("TotalCount", "TOTAL"), ("Reclaimable", "RECLAIMABLE")],
    )
    .map_err(strata_runtime::Error)?;
    for (t, n, a, s, r) in rows {
        out.row(&json!({
            "Type": t, "TotalCount": n.to_string(), "Active": a.to_string(),
            "Size": human_size(s), "Reclaimable": format!("{}{}", human_size(r), pct(r, s)),
        }))
        .map_err(strata_runtime::Error)?;
    }
    crate::print_out(out)
}

/// `system prune` (both), `container prune` (`ctrs`), `image prune` (`imgs`).
pub fn prune(store: &Store, all: bool, force: bool, ctrs: bool, imgs: bool) -> R {
    if !force {
        eprint!(
            "WARNING! This will remove:\n{}{}{}Are you sure you want to continue? [y/N] ",
            if ctrs {
                "  - all stopped containers\n"
            } else {
                ""
            },
            if ctrs && imgs {
                "  - all networks not used by at least one container\n"
            } else {
                ""
            },
            if !imgs {
                ""
            } else if all {
                "  - all images without at least one container associated to them\n"
            } else {
                "  - all dangling (untagged) images\n"
            }
        );
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Err(err!("nothing removed (answer y, or pass -f)"));
        }
    }
    let mut out = String::new();
    let mut removed_ctrs = Vec::new();
    for c in container::list_readable(store)? {
        if ctrs && container::reconcile(store, &c.id).is_ok_and(|st| st.status != Status::Running) {
            let size = dir_size(&container::Paths::new(store, &c.id).upper());
            container::remove(store, &c.id, false)?;
            removed_ctrs.push((c.id, size));
        }
    }
    let used: std::collections::HashSet<String> = container::list_readable(store)?
        .into_iter()
        .map(|c| c.image_id)
        .collect();
    let mut removed_imgs = Vec::new();
    let mut reclaimed: u64 = removed_ctrs.iter().map(|(_, s)| s).sum();
    let mut done = std::collections::HashSet::new();
    for row in images::list(store)? {
        let unused = !used.contains(&row.id);
        let dangling = row.reference.is_none();
        if imgs && unused && (all || dangling) && done.insert(row.id.clone()) {
            let name = match &row.reference {
                Some(r) if all => format!("{}:{}", r.name, r.tag),
                _ => row.id.clone(),
            };
            // Every tag of the image goes: rmi -f of the id removes them all.
            images::rmi(store, &row.id, true).map_err(|e| err!("cannot remove {name}: {e}"))?;
            reclaimed += row.size;
            removed_imgs.push(row.id);
        }
    }
    if !removed_ctrs.is_empty() {
        out.push_str("Deleted Containers:\n");
        for (id, _) in &removed_ctrs {
            out.push_str(&format!("{id}\n"));
        }
        out.push('\n');
    }
    // `system prune` (both kinds) clears the build cache too, as docker's does.
    if ctrs && imgs {
        let n = strata_runtime::build::cache::prune(store)?;
        if n > 0 {
            out.push_str(&format!("Deleted build cache entries: {n}\n\n"));
        }
    }
    // `system prune` (both kinds): the user networks no container is on, as docker's.
    if ctrs && imgs {
        let nets = strata_runtime::network::manage::prune(store)?;
        if !nets.is_empty() {
            out.push_str("Deleted Networks:\n");
            for n in &nets {
                out.push_str(&format!("{n}\n"));
            }
            out.push('\n');
        }
    }
    if !removed_imgs.is_empty() {
        out.push_str("Deleted Images:\n");
        for id in &removed_imgs {
            out.push_str(&format!("deleted: {id}\n"));
        }
        out.push('\n');
    }
    out.push_str(&format!("Total reclaimed space: {}", human_size(reclaimed)));
    crate::print_text(&out)
}
