//! `strata network create/rm/connect/disconnect/prune`: changes to the network records
//! (under the store lock) and, for a running container, to its live interfaces.

use std::net::Ipv4Addr;

use crate::err;
use crate::spec::{self, Paths};
use crate::store::Store;
use crate::util::Result;

use super::netlink::Netlink;
use super::records::{self, Network, DEFAULT};
use super::{attach, etc, is_bridged};

fn root_only(what: &str) -> Result<()> {
    if crate::isolation::rootless::in_userns() || crate::isolation::rootless::needed() {
        return Err(err!(
            "{what} needs root (bridges and veths): rootless containers use pasta on the default network"
        ));
    }
    Ok(())
}

/// `network create`.
pub fn create(
    store: &Store,
    name: &str,
    subnet: Option<&str>,
    gateway: Option<&str>,
) -> Result<Network> {
    root_only("network create")?;
    let _lock = store.lock_exclusive()?;
    records::create(store, name, subnet, gateway)
}

/// `network rm`: refused while a container is on it.
pub fn remove(store: &Store, name: &str) -> Result<()> {
    if name == DEFAULT {
        return Err(err!("the default network bridge cannot be removed"));
    }
    let _lock = store.lock_exclusive()?;
    let net = records::load(store, name)?.ok_or_else(|| err!("network {name} not found"))?;
    let ids = spec::list_ids(store)?;
    if let Some(id) = net.members.keys().find(|i| ids.contains(i)) {
        let who = spec::load_config(store, id)
            .map(|c| c.name)
            .unwrap_or_default();
        return Err(err!(
            "network {name} is in use by container {who}: remove it or disconnect it first"
        ));
    }
    super::remove_bridge(&net)?;
    records::delete(store, name)?;
    records::unclaim(store, name, &net.subnet);
    Ok(())
}

/// `network prune`: remove every user network no container is on; their names.
pub fn prune(store: &Store) -> Result<Vec<String>> {
    let mut gone = Vec::new();
    {
        let _lock = store.lock_exclusive()?;
        super::forget_missing(store)?;
    }
    for n in records::list(store)? {
        if n.name != DEFAULT && n.members.is_empty() {
            remove(store, &n.name)?;
            gone.push(n.name);
        }
    }
    Ok(gone)
}

/// The running init's pid of container `id`, if it runs.
fn running_pid(store: &Store, id: &str) -> Option<u32> {
    let v: serde_json::Value = crate::util::read_json(&Paths::new(store, id).state()).ok()?;
    (v["status"].as_str() == Some("running"))
        .then(|| v["pid"].as_u64().map(|p| p as u32))
        .flatten()
}

/// `network connect NET CONTAINER`: an address on NET now; a running container also gets
/// the interface now (else at its next start).
pub fn connect(store: &Store, name: &str, container: &str, ip: Option<&str>) -> Result<Ipv4Addr> {
    root_only("network connect")?;
    let id = spec::resolve(store, container)?;
    let cfg = spec::load_config(store, &id)?;
    if !is_bridged(&cfg.network) {
        return Err(err!(
            "container {} uses --network {}: only bridged containers join networks",
            cfg.name,
            cfg.network
        ));
    }
    let (net, addr, n) = {
        let _lock = store.lock_exclusive()?;
        let mut net =
            records::load(store, name)?.ok_or_else(|| err!("network {name} not found"))?;
        if net.members.contains_key(&id) {
            return Err(err!("container {} is already on network {name}", cfg.name));
        }
        let want = ip
            .map(|s| s.parse().map_err(|_| err!("invalid --ip {s:?}")))
            .transpose()?;
        let addr = records::allocate(store, &mut net, &id, want)?;
        let n = records::memberships(store, &id, &cfg.network)?
            .iter()
            .position(|(m, _)| m.name == net.name)
            .unwrap_or(0);
        (net, addr, n)
    };
    etc::refresh_members(store, &net, "");
    if let Some(pid) = running_pid(store, &id) {
        if let Err(e) = attach::hot_plug(&net, &id, n, pid, addr) {
            let _lock = store.lock_exclusive()?;
            let mut net =
                records::load(store, name)?.ok_or_else(|| err!("network {name} vanished"))?;
            net.members.remove(&id);
            records::save(store, &net)?;
            return Err(e);
        }
    }
    Ok(addr)
}

/// `network disconnect NET CONTAINER`: release its address (and delete its interface).
pub fn disconnect(store: &Store, name: &str, container: &str) -> Result<()> {
    let id = spec::resolve(store, container)?;
    let cfg = spec::load_config(store, &id)?;
    if cfg.network == name || (cfg.network == DEFAULT && name == DEFAULT) {
        return Err(err!(
            "network {name} is container {}'s own (--network): remove the container instead",
            cfg.name
        ));
    }
    let _lock = store.lock_exclusive()?;
    let n = records::memberships(store, &id, &cfg.network)?
        .iter()
        .position(|(m, _)| m.name == name)
        .ok_or_else(|| err!("container {} is not on network {name}", cfg.name))?;
    let mut net = records::load(store, name)?.ok_or_else(|| err!("network {name} not found"))?;
    net.members.remove(&id);
    records::save(store, &net)?;
    if let Ok(mut nl) = Netlink::open() {
        let _ = nl.delete(&attach::host_veth(&id, n));
    }
    etc::refresh_members(store, &net, "");
    Ok(())
}
