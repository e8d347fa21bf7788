//! strata's packet filter rules, in one nftables table (`ip strata`) that strata alone
//! writes, through `nft -j` (JSON in, JSON out). Every rule carries a comment naming its
//! owner ("net:NAME" for a network's masquerade and isolation, "ctr:ID" for a container's
//! published ports), so that removing an owner deletes exactly its rules by handle; no
//! other table is read, flushed or changed.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::err;
use crate::spec::PortMapping;
use crate::util::Result;

/// The table's name (family ip).
pub const TABLE: &str = "strata";

/// The host-wide lock that serializes strata's changes to its table. Every store shares
/// the one table, and a removal lists the rules, then deletes them by handle (the table
/// with its last rule): without the lock, a concurrent add lands in a table about to be
/// deleted, and the same removal from two processes (`rm` racing the supervisor's
/// teardown) has one of them fail on handles the other deleted.
const LOCK: &str = "/run/strata-nft.lock";

/// Run `f` holding [`LOCK`].
fn locked<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .map_err(|e| err!("cannot open {LOCK} ({e}): strata's port rules need root"))?;
    let _lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| err!("cannot lock {LOCK}: {e}"))?;
    f()
}

/// Run `nft -j -f -` on `cmds` (one atomic transaction).
fn apply(cmds: Vec<Value>) -> Result<()> {
    let doc = json!({ "nftables": cmds }).to_string();
    let mut child = Command::new("nft")
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            err!("cannot run nft ({e}): install Debian's nftables package (scripts/setup)")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(doc.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err!("cannot wait for nft: {e}"))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        return Err(err!(
            "nft refused strata's rules: {}",
            msg.lines().next().unwrap_or("no message")
        ));
    }
    Ok(())
}

/// The table's rules as (chain, handle, comment), or None if there is no table.
fn rules() -> Result<Option<Vec<(String, u64, String)>>> {
    let out = Command::new("nft")
        .args(["-j", "-a", "list", "table", "ip", TABLE])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| {
            err!("cannot run nft ({e}): install Debian's nftables package (scripts/setup)")
        })?;
    if !out.status.success() {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| err!("nft printed something that is not JSON: {e}"))?;
    let items = v["nftables"].as_array().cloned().unwrap_or_default();
    Ok(Some(
        items
            .iter()
            .filter_map(|i| {
                let r = i.get("rule")?;
                Some((
                    r["chain"].as_str()?.to_string(),
                    r["handle"].as_u64()?,
                    r["comment"].as_str().unwrap_or_default().to_string(),
                ))
            })
            .collect(),
    ))
}

fn rule(chain: &str, comment: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {"family": "ip", "table": TABLE, "chain": chain,
        "comment": comment, "expr": expr}}})
}

fn m(left: Value, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn payload(proto: &str, field: &str) -> Value {
    json!({"payload": {"protocol": proto, "field": field}})
}

/// The table and its base chains ("add" is idempotent: existing ones are kept).
fn base() -> Vec<Value> {
    let chain = |name: &str, ty: &str, hook: &str, prio: i32| {
        json!({"add": {"chain": {"family": "ip", "table": TABLE, "name": name,
            "type": ty, "hook": hook, "prio": prio, "policy": "accept"}}})
    };
    vec![
        json!({"add": {"table": {"family": "ip", "name": TABLE}}}),
        chain("prerouting", "nat", "prerouting", -100),
        chain("output", "nat", "output", -100),
        chain("postrouting", "nat", "postrouting", 100),
        chain("forward", "filter", "forward", 0),
    ]
}

/// Install network `id`'s rules: masquerade its subnet going out anywhere but its
/// bridge, masquerade host loopback sources DNATed into it (ports published on 127.0.0.1),
/// and drop what it forwards to another strata bridge (isolation between networks).
pub fn add_network(id: &str, bridge: &str, subnet: &str) -> Result<()> {
    let (addr, len) = super::records::parse_cidr(subnet)?;
    let c = format!("net:{id}");
    let mut cmds = base();
    let prefix = json!({"prefix": {"addr": addr.to_string(), "len": len}});
    cmds.push(rule(
        "postrouting",
        &c,
        vec![
            m(payload("ip", "saddr"), "==", prefix),
            m(meta("oifname"), "!=", json!(bridge)),
            json!({"masquerade": null}),
        ],
    ));
    cmds.push(rule(
        "postrouting",
        &c,
        vec![
            m(meta("oifname"), "==", json!(bridge)),
            m(
                payload("ip", "saddr"),
                "==",
                json!({"prefix": {"addr": "127.0.0.0", "len": 8}}),
            ),
            json!({"masquerade": null}),
        ],
    ));
    cmds.push(rule(
        "forward",
        &c,
        vec![
            m(meta("iifname"), "==", json!(bridge)),
            m(
                meta("oifname"),
                "==",
                json!(format!("{}*", super::BRIDGE_PREFIX)),
            ),
            m(meta("oifname"), "!=", json!(bridge)),
            json!({"drop": null}),
        ],
    ));
    locked(|| apply(cmds))
}

/// Install container `id`'s published ports: DNAT to `ip` for traffic to a local address
/// (prerouting: from elsewhere; output: from the host itself, 127.0.0.1 included).
pub fn add_ports(id: &str, ip: &str, ports: &[PortMapping]) -> Result<()> {
    let c = format!("ctr:{id}");
    let mut cmds = base();
    for p in ports {
        let mut expr = vec![m(
            json!({"fib": {"result": "type", "flags": ["daddr"]}}),
            "==",
            json!("local"),
        )];
        if p.host_ip != "0.0.0.0" {
            expr.push(m(payload("ip", "daddr"), "==", json!(p.host_ip)));
        }
        expr.push(m(payload(&p.proto, "dport"), "==", json!(p.host_port)));
        expr.push(json!({"dnat": {"addr": ip, "port": p.container_port}}));
        for chain in ["prerouting", "output"] {
            cmds.push(rule(chain, &c, expr.clone()));
        }
    }
    locked(|| apply(cmds))
}

/// Delete every rule whose comment is `comment`; then the table itself if no rule is
/// left in it. Nothing to do (and no error) when there is no table.
pub fn remove(comment: &str) -> Result<()> {
    locked(|| remove_locked(comment))
}

fn remove_locked(comment: &str) -> Result<()> {
    let Some(rules) = rules()? else {
        return Ok(());
    };
    let mut cmds: Vec<Value> = rules
        .iter()
        .filter(|(_, _, c)| c == comment)
        .map(|(chain, h, _)| {
            json!({"delete": {"rule": {"family": "ip", "table": TABLE, "chain": chain, "handle": h}}})
        })
        .collect();
    let left = rules.len() - cmds.len();
    if left == 0 {
        cmds = vec![json!({"delete": {"table": {"family": "ip", "name": TABLE}}})];
    }
    if cmds.is_empty() {
        return Ok(());
    }
    apply(cmds)
}

/// Whether the table exists and holds a rule with `comment`.
pub fn has(comment: &str) -> Result<bool> {
    Ok(rules()?.is_some_and(|r| r.iter().any(|(_, _, c)| c == comment)))
}
