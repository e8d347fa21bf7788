//! docker's smaller run options, parsed and checked at create: labels, ulimits, the restart
//! policy, the stop signal, extra hosts and DNS servers, env files.

use std::path::Path;

use crate::container::create::RunOptions;
use crate::err;
use crate::spec::{Extras, RestartPolicy, Ulimit};
use crate::util::{Ctx, Result};

/// The resource names `--ulimit` takes (docker's, as in `ulimit -a`).
pub const ULIMITS: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

fn limit_value(v: &str, s: &str) -> Result<i64> {
    match v {
        "-1" | "unlimited" => Ok(-1),
        _ => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| err!("invalid --ulimit {s:?}: limits are numbers or -1")),
    }
}

/// `--ulimit NAME=SOFT[:HARD]`.
pub fn parse_ulimit(s: &str) -> Result<Ulimit> {
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| err!("invalid --ulimit {s:?}: use NAME=SOFT[:HARD], as nofile=1024:2048"))?;
    if !ULIMITS.contains(&name) {
        return Err(err!(
            "unknown --ulimit {name:?}: use one of {}",
            ULIMITS.join(", ")
        ));
    }
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    let (soft, hard) = (limit_value(soft, s)?, limit_value(hard, s)?);
    // -1 is unlimited: above every finite hard limit.
    let above = |a: i64, b: i64| b != -1 && (a == -1 || a > b);
    if above(soft, hard) {
        return Err(err!(
            "invalid --ulimit {s:?}: the soft limit is above the hard one"
        ));
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// `--restart no|on-failure[:N]|always|unless-stopped`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy> {
    let (name, n) = s.split_once(':').unwrap_or((s, ""));
    let bad = || err!("invalid --restart {s:?}: use no, on-failure[:N], always or unless-stopped");
    match (name, n) {
        ("no" | "always" | "unless-stopped", "") | ("on-failure", "") => Ok(RestartPolicy {
            name: name.into(),
            max_retries: 0,
        }),
        ("on-failure", n) => Ok(RestartPolicy {
            name: name.into(),
            max_retries: n.parse().map_err(|_| bad())?,
        }),
        _ => Err(bad()),
    }
}

/// `--env-file FILE`: KEY=VALUE lines (KEY alone copies the host's), `#` comments, blanks.
pub fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .ctx(|| format!("cannot read the --env-file {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

fn check_ip(ip: &str, what: &str) -> Result<()> {
    ip.parse::<std::net::IpAddr>()
        .map(|_| ())
        .map_err(|_| err!("invalid {what} {ip:?}: give an IPv4 or IPv6 address"))
}

/// The options kept in the config's `extras`, checked. The stop signal is the image's
/// STOPSIGNAL unless `--stop-signal` is given (set by the caller from the image).
pub fn extras(o: &RunOptions) -> Result<Extras> {
    let mut labels = std::collections::BTreeMap::new();
    for l in &o.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            return Err(err!("invalid --label {l:?}: use KEY=VALUE"));
        }
        labels.insert(k.to_string(), v.to_string());
    }
    if let Some(s) = &o.stop_signal {
        crate::container::parse_signal(s)?;
    }
    for h in &o.add_hosts {
        // NAME:IP, the IP possibly IPv6 with colons of its own.
        match h.split_once(':') {
            Some((name, ip)) if !name.is_empty() => check_ip(ip, "--add-host address")?,
            _ => return Err(err!("invalid --add-host {h:?}: use NAME:IP")),
        }
    }
    for d in &o.dns {
        check_ip(d, "--dns")?;
    }
    Ok(Extras {
        init: o.init,
        stop_signal: o.stop_signal.clone(),
        stop_timeout: o.stop_timeout,
        labels,
        read_only: o.read_only,
        tmpfs: Vec::new(),
        ulimits: o
            .ulimits
            .iter()
            .map(|u| parse_ulimit(u))
            .collect::<Result<_>>()?,
        group_add: o.group_add.clone(),
        add_hosts: o.add_hosts.clone(),
        dns: o.dns.clone(),
        restart: o
            .restart
            .as_deref()
            .map(parse_restart)
            .transpose()?
            .unwrap_or_default(),
    })
}
