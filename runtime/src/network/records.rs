//! Networks on disk: `networks/NAME.json` in the store, each with its bridge, subnet,
//! gateway and the addresses it gave out (container id -> address). Every change is made
//! under the store's exclusive lock and written atomically, so the allocation is
//! persistent, shared by concurrent strata processes, and survives a killed one: an
//! address stays with its container until `rm` (stop/start keep it).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::err;
use crate::spec::Paths;
use crate::store::Store;
use crate::util::{now_secs, random_id, read_json, Result};

/// The default network's name, bridge and subnet. 10.88.0.0/16 is podman's default: it
/// clashes neither with docker's 172.17.0.0/16 (docker may run on the same machine) nor
/// with this machine's 192.0.2.0/24; `network create` refuses subnets that overlap a
/// route of the host's. Only the machine's default store gets strata0 and 10.88.0.0/16:
/// another store (`--root`, each test's) gets a bridge and a free 10.89.N.0/24 of its own,
/// so that two stores never hand out the same address on one bridge.
pub const DEFAULT: &str = "bridge";
const DEFAULT_BRIDGE: &str = "strata0";
const DEFAULT_SUBNET: &str = "10.88.0.0/16";

/// One bridge network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    /// Its name (`bridge` for the default one).
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// The Linux bridge's interface name.
    pub bridge: String,
    /// "10.88.0.0/16".
    pub subnet: String,
    /// The bridge's address, the containers' default route.
    pub gateway: String,
    /// Seconds since the epoch.
    pub created: i64,
    /// Container id -> its address on this network.
    #[serde(default)]
    pub members: BTreeMap<String, String>,
}

impl Network {
    /// The subnet's prefix length.
    pub fn prefix(&self) -> u8 {
        parse_cidr(&self.subnet).map(|(_, l)| l).unwrap_or(24)
    }
}

/// "a.b.c.d/n" as (network address, n).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8)> {
    let bad = || err!("invalid subnet {s:?}: use an IPv4 CIDR like 10.89.0.0/24");
    let (a, l) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let len: u8 = l.parse().map_err(|_| bad())?;
    if !(8..=30).contains(&len) {
        return Err(err!(
            "invalid subnet {s:?}: the prefix must be between /8 and /30"
        ));
    }
    Ok((Ipv4Addr::from(u32::from(addr) & mask(len)), len))
}

fn mask(len: u8) -> u32 {
    u32::MAX << (32 - len as u32)
}

fn dir(store: &Store) -> PathBuf {
    store.root.join("networks")
}

fn path(store: &Store, name: &str) -> PathBuf {
    dir(store).join(format!("{name}.json"))
}

/// Network `name`, None if there is none (the default one, unsaved until first used).
pub fn load(store: &Store, name: &str) -> Result<Option<Network>> {
    let p = path(store, name);
    if !p.exists() {
        return Ok((name == DEFAULT).then(default_network));
    }
    read_json(&p).map(Some)
}

/// Where stores claim subnets, one file per subnet naming its store and network: the
/// machine's bridges are shared by every store, their subnets must not overlap.
const CLAIMS: &str = "/run/strata/subnets";

fn claim_path(subnet: &str) -> PathBuf {
    PathBuf::from(CLAIMS).join(subnet.replace('/', "_"))
}

/// Who claims a subnet: network name, network id, bridge.
struct Owner<'a> {
    name: &'a str,
    id: &'a str,
    bridge: &'a str,
}

/// Claim `subnet` for network `who` of `store`; false if another live one holds it. A
/// claim whose store or network is gone is taken over, and what its network left on the
/// machine (a store deleted with containers on it) goes: its bridge and its rules.
fn claim(store: &Store, who: &Owner, subnet: &str) -> Result<bool> {
    use std::io::Write;
    std::fs::create_dir_all(CLAIMS).map_err(|e| err!("cannot create {CLAIMS}: {e}"))?;
    let p = claim_path(subnet);
    let me = format!(
        "{}\n{}\n{}\n{}",
        store.root.display(),
        who.name,
        who.id,
        who.bridge
    );
    for _ in 0..3 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(mut f) => {
                f.write_all(me.as_bytes())
                    .map_err(|e| err!("cannot write {}: {e}", p.display()))?;
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(&p).unwrap_or_default();
                if owner == me {
                    return Ok(true);
                }
                let f: Vec<&str> = owner.lines().collect();
                let live = f.len() < 2
                    || std::path::Path::new(f[0])
                        .join("networks")
                        .join(format!("{}.json", f[1]))
                        .exists();
                if live {
                    return Ok(false);
                }
                if let (Some(id), Some(bridge)) = (f.get(2), f.get(3)) {
                    if let Ok(mut nl) = super::netlink::Netlink::open() {
                        let _ = nl.delete(bridge);
                    }
                    let _ = super::nft::remove(&format!("net:{id}"));
                }
                let _ = std::fs::remove_file(&p);
            }
            Err(e) => return Err(err!("cannot claim the subnet {subnet}: {e}")),
        }
    }
    Ok(false)
}

/// Give back `subnet` (its network is removed).
pub fn unclaim(store: &Store, name: &str, subnet: &str) {
    let p = claim_path(subnet);
    let me = format!("{}\n{name}\n", store.root.display());
    if std::fs::read_to_string(&p).is_ok_and(|o| o.starts_with(&me)) {
        let _ = std::fs::remove_file(p);
    }
}

/// The default network, saved with its bridge and subnet on first use (caller holds the
/// store lock).
pub fn default_saved(store: &Store) -> Result<Network> {
    if let Some(n) = load(store, DEFAULT)?.filter(|n| n.created != 0) {
        return Ok(n);
    }
    let is_default_store = crate::store::Store::default_root()
        .ok()
        .and_then(|d| std::fs::canonicalize(d).ok())
        .zip(std::fs::canonicalize(&store.root).ok())
        .is_some_and(|(a, b)| a == b);
    let mut n = default_network();
    n.id = random_id()?;
    n.created = now_secs();
    let own = format!("{}{}", super::BRIDGE_PREFIX, &n.id[..8]);
    let who = Owner {
        name: DEFAULT,
        id: &n.id,
        bridge: DEFAULT_BRIDGE,
    };
    if !(is_default_store && claim(store, &who, DEFAULT_SUBNET)?) {
        let who = Owner {
            bridge: &own,
            ..who
        };
        let (addr, len) = free_subnet(store, &who)?;
        n.subnet = format!("{addr}/{len}");
        n.gateway = Ipv4Addr::from(u32::from(addr) + 1).to_string();
        n.bridge = own.clone();
    }
    save(store, &n)?;
    Ok(n)
}

/// The first 10.89.N.0/24 that overlaps no network or host route, claimed for `who`.
fn free_subnet(store: &Store, who: &Owner) -> Result<(Ipv4Addr, u8)> {
    for n in 0..=255u8 {
        let a = Ipv4Addr::new(10, 89, n, 0);
        // Again for each: a takeover may have removed a leftover bridge's route.
        let used = taken(store)?;
        if used
            .iter()
            .any(|(b, bl)| overlaps(u32::from(a), 24, *b, *bl))
        {
            // A leftover of a gone store may hold it: a claim takes it over and cleans it.
            if !claim_path(&format!("{a}/24")).exists() || !claim(store, who, &format!("{a}/24"))? {
                continue;
            }
            if taken(store)?
                .iter()
                .any(|(b, bl)| overlaps(u32::from(a), 24, *b, *bl))
            {
                let _ = std::fs::remove_file(claim_path(&format!("{a}/24")));
                continue;
            }
            return Ok((a, 24));
        }
        if claim(store, who, &format!("{a}/24"))? {
            return Ok((a, 24));
        }
    }
    Err(err!("no free 10.89.N.0/24 subnet is left: pass --subnet"))
}

/// Subnets in use: this store's networks and the host's routes, other stores' bridges
/// included (an unclaimed leftover bridge blocks its subnet rather than being doubled).
fn taken(store: &Store) -> Result<Vec<(u32, u8)>> {
    let own = list(store)?;
    Ok(own
        .iter()
        .filter(|n| n.created != 0)
        .filter_map(|n| parse_cidr(&n.subnet).ok())
        .map(|(a, l)| (u32::from(a), l))
        .chain(
            host_routes()
                .into_iter()
                .filter(|(_, _, dev)| !own.iter().any(|n| n.bridge == *dev))
                .map(|(a, l, _)| (a, l)),
        )
        .collect())
}

/// Write network `n` (under the store lock): a new file renamed over the old, not
/// fsynced. Two fsyncs per create and per rm were most of what the bridge added to a
/// `run` on a busy disk, and the record need not outlive a power cut: an address lost
/// with it is allocated again at the next start, a release lost is dropped at the next
/// allocation (its container is gone).
pub fn save(store: &Store, n: &Network) -> Result<()> {
    let d = dir(store);
    std::fs::create_dir_all(&d).map_err(|e| err!("cannot create {}: {e}", d.display()))?;
    let p = path(store, &n.name);
    let tmp = d.join(format!(".{}.json.tmp{}", n.name, std::process::id()));
    let data = serde_json::to_vec_pretty(n).map_err(|e| err!("encoding {}: {e}", p.display()))?;
    std::fs::write(&tmp, data)
        .and_then(|_| std::fs::rename(&tmp, &p))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err!("cannot write {}: {e}", p.display())
        })
}

/// Remove network `name`'s file (and the networks directory once empty).
pub fn delete(store: &Store, name: &str) -> Result<()> {
    match std::fs::remove_file(path(store, name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(err!("cannot remove network {name}: {e}"))
        }
        _ => {
            let _ = std::fs::remove_dir(dir(store));
            Ok(())
        }
    }
}

/// Every network, the default one first.
pub fn list(store: &Store) -> Result<Vec<Network>> {
    let mut out = vec![load(store, DEFAULT)?.unwrap_or_else(default_network)];
    let Ok(rd) = std::fs::read_dir(dir(store)) else {
        return Ok(out);
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".json").map(str::to_string)
        })
        .filter(|n| n != DEFAULT)
        .collect();
    names.sort();
    for n in names {
        if let Some(net) = load(store, &n)? {
            out.push(net);
        }
    }
    Ok(out)
}

fn default_network() -> Network {
    Network {
        name: DEFAULT.into(),
        id: format!("{:0>64}", "0"),
        bridge: DEFAULT_BRIDGE.into(),
        subnet: DEFAULT_SUBNET.into(),
        gateway: "10.88.0.1".into(),
        created: 0,
        members: BTreeMap::new(),
    }
}

/// The host's IPv4 routes as (destination, prefix, device), from /proc/net/route.
fn host_routes() -> Vec<(u32, u8, String)> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let m = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // The kernel prints the network-order bytes as a host-order (little-endian) word.
            Some((
                u32::from_be_bytes(dest.to_le_bytes()),
                m.count_ones() as u8,
                f[0].to_string(),
            ))
        })
        .filter(|(_, len, _)| *len > 0)
        .collect()
}

fn overlaps(a: u32, al: u8, b: u32, bl: u8) -> bool {
    let l = al.min(bl);
    a & mask(l) == b & mask(l)
}

/// Create network `name` with `subnet` (else the first free 10.89.N.0/24) and `gateway`
/// (else the subnet's first address). Caller holds the store lock.
pub fn create(
    store: &Store,
    name: &str,
    subnet: Option<&str>,
    gateway: Option<&str>,
) -> Result<Network> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok || ["host", "none", "container"].contains(&name) {
        return Err(err!(
            "invalid network name {name:?}: use letters, digits and _ . - (not host, none or container)"
        ));
    }
    if path(store, name).exists() || name == DEFAULT {
        return Err(err!("network {name} already exists"));
    }
    let taken = taken(store)?;
    let id = random_id()?;
    let bridge = format!("{}{}", super::BRIDGE_PREFIX, &id[..8]);
    let who = Owner {
        name,
        id: &id,
        bridge: &bridge,
    };
    let (addr, len) = match subnet {
        Some(s) => {
            let (a, l) = parse_cidr(s)?;
            let clash = taken
                .iter()
                .any(|(b, bl)| overlaps(u32::from(a), l, *b, *bl));
            if clash || !claim(store, &who, &format!("{a}/{l}"))? {
                return Err(err!(
                    "the subnet {s} overlaps another network or a route of this host: pick another --subnet"
                ));
            }
            (a, l)
        }
        None => free_subnet(store, &who)?,
    };
    let gw = match gateway {
        Some(g) => {
            let ip: Ipv4Addr = g
                .parse()
                .map_err(|_| err!("invalid --gateway {g:?}: use an IPv4 address"))?;
            if u32::from(ip) & mask(len) != u32::from(addr) {
                return Err(err!("the gateway {g} is not in the subnet {addr}/{len}"));
            }
            ip
        }
        None => Ipv4Addr::from(u32::from(addr) + 1),
    };
    let n = Network {
        name: name.into(),
        bridge,
        id,
        subnet: format!("{addr}/{len}"),
        gateway: gw.to_string(),
        created: now_secs(),
        members: BTreeMap::new(),
    };
    save(store, &n)?;
    Ok(n)
}

/// Give container `id` an address on `net` (`want`, else the lowest free one), saved.
/// Caller holds the store lock.
pub fn allocate(
    store: &Store,
    net: &mut Network,
    id: &str,
    want: Option<Ipv4Addr>,
) -> Result<Ipv4Addr> {
    if let Some(ip) = net.members.get(id).and_then(|s| s.parse().ok()) {
        return Ok(ip);
    }
    // Releases lost (see save): their containers are gone.
    net.members
        .retain(|m, _| m == id || Paths::new(store, m).dir.exists());
    let (base, len) = parse_cidr(&net.subnet)?;
    let base = u32::from(base);
    let last = base | !mask(len);
    let used: Vec<u32> = net
        .members
        .values()
        .filter_map(|s| s.parse::<Ipv4Addr>().ok())
        .map(u32::from)
        .chain(net.gateway.parse::<Ipv4Addr>().ok().map(u32::from))
        .collect();
    let ip = match want {
        Some(ip) => {
            let v = u32::from(ip);
            if v <= base || v >= last || v & mask(len) != base {
                return Err(err!("--ip {ip} is not a host address of {}", net.subnet));
            }
            if used.contains(&v) {
                return Err(err!(
                    "the address {ip} is already in use on network {}",
                    net.name
                ));
            }
            v
        }
        None => (base + 1..last)
            .find(|v| !used.contains(v))
            .ok_or_else(|| err!("network {} has no free address left", net.name))?,
    };
    let ip = Ipv4Addr::from(ip);
    net.members.insert(id.into(), ip.to_string());
    save(store, net)?;
    Ok(ip)
}

/// Release every address of container `id`; the networks it left. Caller holds the lock.
pub fn release(store: &Store, id: &str) -> Result<Vec<Network>> {
    let mut left = Vec::new();
    for mut n in list(store)? {
        if n.members.remove(id).is_some() {
            save(store, &n)?;
            left.push(n);
        }
    }
    Ok(left)
}

/// The networks container `id` is on, with its address on each (primary first).
pub fn memberships(store: &Store, id: &str, primary: &str) -> Result<Vec<(Network, Ipv4Addr)>> {
    let mut v: Vec<(Network, Ipv4Addr)> = list(store)?
        .into_iter()
        .filter_map(|n| {
            let ip = n.members.get(id)?.parse().ok()?;
            Some((n, ip))
        })
        .collect();
    v.sort_by_key(|(n, _)| n.name != primary);
    Ok(v)
}
