//! Container networking, docker's model: `host`, `none`, the default `bridge` network,
//! user bridge networks, and `container:NAME` (another container's namespace).
//!
//! A bridged container gets, at create, an address on each of its networks from the
//! store's allocator ([`records`], kept until `rm`); at start, its supervisor makes sure
//! the network's bridge exists ([`netlink`]), creates one veth pair per network with the
//! peer directly in the container's new network namespace, and its init configures the
//! peer (eth0, eth1...), the default route and loopback ([`attach`]). Published ports are
//! DNAT rules in strata's nftables table ([`nft`]); rootless containers use pasta
//! ([`pasta`]). A supervisor that dies takes the namespace, hence the veth pair, with it;
//! its rules are removed by the next reconcile (`ps`, `rm`), which calls [`teardown`].

pub mod attach;
pub mod etc;
pub mod manage;
pub mod netlink;
pub mod nft;
pub mod pasta;
pub mod ports;
pub mod records;

use std::net::Ipv4Addr;

use crate::err;
use crate::spec::{self, ContainerConfig, PortMapping};
use crate::store::Store;
use crate::util::Result;

pub use attach::{ChildNet, Plan};
pub use records::{Network, DEFAULT};

/// Every strata bridge's name starts with this (the isolation rules match on it).
pub const BRIDGE_PREFIX: &str = "strata";

/// The MTU of bridges and veths (Ethernet's).
pub const MTU: u32 = 1500;

/// What `--network` asked for, checked at create.
pub struct Request<'a> {
    /// --network (empty: the default bridge).
    pub network: &'a str,
    /// -p values.
    pub publish: &'a [String],
    /// -P, with the image's exposed ports ("80/tcp").
    pub publish_all: Option<Vec<String>>,
    /// --ip.
    pub ip: Option<&'a str>,
}

/// True for a mode that uses bridge networks (the default one or a user network).
pub fn is_bridged(mode: &str) -> bool {
    !matches!(mode, "host" | "none") && !mode.starts_with("container:")
}

/// The container's network mode and published ports from the create request; addresses
/// are allocated for container `id` (the caller holds the store lock).
pub fn at_create(store: &Store, id: &str, req: &Request) -> Result<(String, Vec<PortMapping>)> {
    let rootless = crate::isolation::rootless::in_userns() || crate::isolation::rootless::needed();
    let mode = match req.network {
        "" | "bridge" | "default" => DEFAULT.to_string(),
        "host" | "none" => req.network.to_string(),
        other => match other.strip_prefix("container:") {
            Some(c) => format!("container:{}", spec::resolve(store, c)?),
            None => {
                if records::load(store, other)?.is_none() {
                    return Err(err!(
                        "network {other} not found: create it with `strata network create {other}` (or use bridge, host, none or container:NAME)"
                    ));
                }
                other.to_string()
            }
        },
    };
    let mut ports: Vec<PortMapping> = req
        .publish
        .iter()
        .map(|p| ports::parse(p))
        .collect::<Result<_>>()?;
    if let Some(exposed) = &req.publish_all {
        ports.extend(ports::exposed(exposed)?);
    }
    if !ports.is_empty() && !is_bridged(&mode) {
        return Err(err!(
            "-p/-P need a bridge network: --network {mode} has no ports of its own to publish"
        ));
    }
    if req.ip.is_some() && !is_bridged(&mode) {
        return Err(err!("--ip needs a bridge network"));
    }
    ports::check_unique(&ports)?;
    // Only with ports: reading every container's config is not free with many of them.
    let others = if ports.is_empty() {
        Vec::new()
    } else {
        spec::list_readable(store)?
    };
    for other in others {
        if let Some(p) = other.ports.iter().find(|o| {
            ports.iter().any(|p| {
                p.host_port == o.host_port
                    && p.proto == o.proto
                    && (p.host_ip == o.host_ip || p.host_ip == "0.0.0.0" || o.host_ip == "0.0.0.0")
            })
        }) {
            return Err(err!(
                "the host port {}/{} is already published by container {}: pick another host port",
                p.host_port,
                p.proto,
                other.name
            ));
        }
    }
    if is_bridged(&mode) {
        if rootless {
            if mode != DEFAULT {
                return Err(err!(
                    "user networks need root (bridges and veths): rootless containers use the default network (pasta)"
                ));
            }
            if req.ip.is_some() {
                return Err(err!("--ip needs root: rootless networking is pasta's"));
            }
        } else {
            let mut net = if mode == DEFAULT {
                records::default_saved(store)?
            } else {
                records::load(store, &mode)?.ok_or_else(|| err!("network {mode} not found"))?
            };
            let want = req
                .ip
                .map(|s| {
                    s.parse::<Ipv4Addr>()
                        .map_err(|_| err!("invalid --ip {s:?}: use an IPv4 address"))
                })
                .transpose()?;
            records::allocate(store, &mut net, id, want)?;
        }
    }
    Ok((mode, ports))
}

/// Undo what a start set up and its supervisor may have left: its port rules. Its veth
/// pairs are not deleted here: the kernel destroys them with the container's namespace
/// when its last process exits (also after a killed supervisor: init dies with it), and
/// an RTM_DELLINK would wait for the same namespace teardown (15 ms or more of
/// synchronize_net on this machine, on every `run`). A name still held by a namespace
/// being torn down is deleted by the next start (see attach). Idempotent.
pub fn teardown(cfg: &ContainerConfig) -> Result<()> {
    if !is_bridged(&cfg.network) || crate::isolation::rootless::in_userns() {
        return Ok(());
    }
    if !cfg.ports.is_empty() {
        nft::remove(&format!("ctr:{}", cfg.id))?;
    }
    Ok(())
}

/// Release container `id`'s addresses (at `rm`; the caller holds the store lock), refresh
/// the other members' hosts files, and remove the bridge and rules of every network left
/// without members (then strata's table, with its last rule).
pub fn release(store: &Store, id: &str) -> Result<()> {
    if crate::isolation::rootless::in_userns() {
        return Ok(());
    }
    for net in records::release(store, id)? {
        etc::refresh_members(store, &net, id);
        if net.members.is_empty() {
            remove_bridge(&net)?;
            if net.name == DEFAULT {
                // Made again on first use: the store is as before the first container.
                records::delete(store, DEFAULT)?;
                records::unclaim(store, DEFAULT, &net.subnet);
            }
        }
    }
    Ok(())
}

/// Delete a network's bridge and its rules (it has no member left).
pub fn remove_bridge(net: &Network) -> Result<()> {
    if let Ok(mut nl) = netlink::Netlink::open() {
        nl.delete(&net.bridge)
            .map_err(|e| err!("cannot delete the bridge {}: {e}", net.bridge))?;
    }
    nft::remove(&format!("net:{}", net.id))
}

/// Drop the addresses of containers that no longer exist (a create killed between the
/// allocation and its config, an `rm` killed halfway). Caller holds the store lock.
pub fn forget_missing(store: &Store) -> Result<()> {
    let ids = spec::list_ids(store)?;
    for mut net in records::list(store)? {
        let before = net.members.len();
        net.members.retain(|id, _| ids.contains(id));
        if net.members.len() != before {
            records::save(store, &net)?;
            if net.members.is_empty() {
                remove_bridge(&net)?;
            }
        }
    }
    Ok(())
}

/// The text of `strata info`'s network line.
pub fn backend() -> String {
    if crate::isolation::rootless::in_userns() || crate::isolation::rootless::needed() {
        match pasta::binary() {
            Some(p) => format!("pasta ({}) for bridge networking, rootless", p.display()),
            None => {
                "rootless: pasta not found (install Debian's passt package); use --net host".into()
            }
        }
    } else {
        "bridge (netlink veth pairs, nftables table ip strata)".into()
    }
}
