//! Connecting a starting container: the supervisor's half ([`ParentNet::attach`]: bridges,
//! veth pairs into the container's namespace, port rules, or pasta) and its init's half
//! ([`ChildNet`]: enter or join the namespace, then configure it), joined by two pipes:
//! init says when its namespace exists, the supervisor answers once the veths are in it.
//!
//! The supervisor works while init mounts the container's root, so the two overlap.

use std::fs::File;
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

use crate::err;
use crate::spec::{ContainerConfig, PortMapping};
use crate::store::Store;
use crate::util::{Ctx, Result};

use super::netlink::Netlink;
use super::records::{self, Network};
use super::{etc, nft, pasta, MTU};

/// The host end of container `id`'s `n`th veth ("st" + 12 hex digits + n: 15 bytes).
pub fn host_veth(id: &str, n: usize) -> String {
    format!("st{}{}", &id[..12.min(id.len())], n)
}

/// One interface init configures in its namespace.
#[derive(Debug, Clone)]
struct Iface {
    name: String,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
}

enum ChildKind {
    Host,
    Loopback,
    Join(OwnedFd),
    Configure(Vec<Iface>),
}

/// Init's half of the container's networking.
pub struct ChildNet {
    kind: ChildKind,
    ready: Option<OwnedFd>,
    answer: Option<OwnedFd>,
}

/// The supervisor's half.
pub struct ParentNet {
    id: String,
    ready: Option<OwnedFd>,
    answer: Option<OwnedFd>,
    links: Vec<(Network, Ipv4Addr)>,
    ports: Vec<PortMapping>,
    pasta: bool,
    netns_file: std::path::PathBuf,
}

/// Both halves, made before the fork; each side drops the other's.
pub struct Plan {
    /// For the container's init.
    pub child: ChildNet,
    /// For the supervisor.
    pub parent: ParentNet,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "cannot create a pipe")
}

/// The pid of a running container's init, read from its state (container:NAME).
fn running_pid(store: &Store, id: &str) -> Result<i32> {
    let p = crate::spec::Paths::new(store, id).state();
    let v: serde_json::Value = crate::util::read_json(&p)?;
    match (v["status"].as_str(), v["pid"].as_i64()) {
        (Some("running"), Some(pid)) => Ok(pid as i32),
        _ => Err(err!(
            "the container whose network this one shares ({}) is not running: start it first",
            &id[..12.min(id.len())]
        )),
    }
}

impl Plan {
    /// Plan container `cfg`'s networking (before its init is forked): open the namespace
    /// to join, or look up its addresses and write its /etc files.
    pub fn prepare(store: &Store, cfg: &ContainerConfig) -> Result<Plan> {
        let mut parent = ParentNet {
            id: cfg.id.clone(),
            ready: None,
            answer: None,
            links: Vec::new(),
            ports: cfg.ports.clone(),
            pasta: false,
            netns_file: crate::spec::Paths::new(store, &cfg.id).dir.join("netns"),
        };
        let kind = match cfg.network.as_str() {
            "host" => ChildKind::Host,
            "none" => ChildKind::Loopback,
            m => match m.strip_prefix("container:") {
                Some(other) => {
                    let pid = running_pid(store, other)?;
                    let path = format!("/proc/{pid}/ns/net");
                    let fd = nix::fcntl::open(
                        path.as_str(),
                        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                        nix::sys::stat::Mode::empty(),
                    )
                    .map_err(|e| err!("cannot open the network namespace {path}: {e}"))?;
                    ChildKind::Join(fd)
                }
                None if crate::isolation::rootless::in_userns() => {
                    parent.pasta = true;
                    ChildKind::Configure(Vec::new())
                }
                None => {
                    let mut links = records::memberships(store, &cfg.id, &cfg.network)?;
                    if links.first().is_none_or(|(n, _)| n.name != cfg.network) {
                        // Its address was lost (see records::save): a new one.
                        let _lock = store.lock_exclusive()?;
                        let mut net = if cfg.network == records::DEFAULT {
                            records::default_saved(store)?
                        } else {
                            records::load(store, &cfg.network)?.ok_or_else(|| {
                                err!(
                                    "network {} of container {} was removed: recreate the container",
                                    cfg.network,
                                    cfg.name
                                )
                            })?
                        };
                        records::allocate(store, &mut net, &cfg.id, None)?;
                        links = records::memberships(store, &cfg.id, &cfg.network)?;
                    }
                    let ifaces = links
                        .iter()
                        .enumerate()
                        .map(|(i, (n, ip))| Iface {
                            name: format!("eth{i}"),
                            ip: *ip,
                            prefix: n.prefix(),
                            gateway: (i == 0).then(|| n.gateway.parse().ok()).flatten(),
                        })
                        .collect();
                    for (n, _) in &links {
                        etc::refresh_members(store, n, &cfg.id);
                    }
                    parent.links = links;
                    ChildKind::Configure(ifaces)
                }
            },
        };
        let mut child = ChildNet {
            kind,
            ready: None,
            answer: None,
        };
        if matches!(child.kind, ChildKind::Configure(_)) {
            let (ready_r, ready_w) = pipe()?;
            let (answer_r, answer_w) = pipe()?;
            child.ready = Some(ready_w);
            child.answer = Some(answer_r);
            parent.ready = Some(ready_r);
            parent.answer = Some(answer_w);
        }
        Ok(Plan { child, parent })
    }
}

impl ChildNet {
    /// The namespace flag init adds to its unshare (a new network namespace unless it
    /// shares the host's or joins another container's).
    pub fn unshare_flags(&self) -> CloneFlags {
        match self.kind {
            ChildKind::Host | ChildKind::Join(_) => CloneFlags::empty(),
            _ => CloneFlags::CLONE_NEWNET,
        }
    }

    /// Before the unshare: join another container's namespace (container:NAME).
    pub fn join(&self) -> Result<()> {
        if let ChildKind::Join(fd) = &self.kind {
            nix::sched::setns(fd, CloneFlags::CLONE_NEWNET)
                .map_err(|e| err!("cannot join the other container's network namespace: {e}"))?;
        }
        Ok(())
    }

    /// After the unshare: tell the supervisor the namespace exists.
    pub fn announce(&mut self) -> Result<()> {
        if let Some(w) = self.ready.take() {
            nix::unistd::write(&w, b"n")
                .map_err(|e| err!("cannot tell the supervisor the namespace is ready: {e}"))?;
        }
        Ok(())
    }

    /// Wait for the supervisor's veths, then configure loopback and every interface.
    pub fn configure(&mut self) -> Result<()> {
        if matches!(self.kind, ChildKind::Host | ChildKind::Join(_)) {
            return Ok(());
        }
        if let Some(r) = self.answer.take() {
            let mut msg = String::new();
            let _ = File::from(r).read_to_string(&mut msg);
            if msg != "OK" {
                let why = msg.strip_prefix("ERR ").unwrap_or("the supervisor stopped");
                return Err(err!("cannot connect the container's network: {why}"));
            }
        }
        let mut nl = Netlink::open().map_err(|e| err!("cannot open netlink: {e}"))?;
        nl.set_up(1, None)
            .map_err(|e| err!("cannot bring up lo: {e}"))?;
        if let ChildKind::Configure(ifaces) = &self.kind {
            for i in ifaces {
                let idx = nl
                    .index(&i.name)
                    .map_err(|e| err!("cannot find {}: {e}", i.name))?
                    .ok_or_else(|| err!("the interface {} did not arrive", i.name))?;
                nl.add_address(idx, i.ip, i.prefix)
                    .map_err(|e| err!("cannot set {}'s address {}: {e}", i.name, i.ip))?;
                nl.set_up(idx, None)
                    .map_err(|e| err!("cannot bring up {}: {e}", i.name))?;
                if let Some(gw) = i.gateway {
                    nl.add_default_route(idx, gw)
                        .map_err(|e| err!("cannot add the default route via {gw}: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

/// The index of `net`'s bridge, created (address, up, rules) if it does not exist yet.
fn ensure_bridge(nl: &mut Netlink, net: &Network) -> Result<u32> {
    let find = |nl: &mut Netlink| {
        nl.index(&net.bridge)
            .map_err(|e| err!("cannot look up the bridge {}: {e}", net.bridge))
    };
    if let Some(i) = find(nl)? {
        return Ok(i);
    }
    match nl.add_bridge(&net.bridge, MTU) {
        // Another strata process made it meanwhile; it sets it up.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            return find(nl)?.ok_or_else(|| err!("the bridge {} vanished", net.bridge))
        }
        r => r.map_err(|e| {
            err!(
                "cannot create the bridge {} ({e}): bridge networking needs root and the bridge module; use --net host",
                net.bridge
            )
        })?,
    }
    let idx = find(nl)?.ok_or_else(|| err!("the bridge {} vanished", net.bridge))?;
    let gw: Ipv4Addr = net
        .gateway
        .parse()
        .map_err(|_| err!("network {} has a bad gateway {:?}", net.name, net.gateway))?;
    nl.add_address(idx, gw, net.prefix())
        .map_err(|e| err!("cannot set the bridge's address {gw}: {e}"))?;
    nl.set_up(idx, None)
        .map_err(|e| err!("cannot bring up the bridge {}: {e}", net.bridge))?;
    // Published ports answer on 127.0.0.1: DNATed loopback sources may leave by the bridge.
    sysctl(
        &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", net.bridge),
        "1",
    )?;
    // Outbound traffic and ports published to other hosts are routed through the host.
    sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
    nft::add_network(&net.id, &net.bridge, &net.subnet)?;
    Ok(idx)
}

fn sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| err!("cannot set {path} to {value}: {e}"))
}

impl ParentNet {
    /// Once init (pid `pid`) said its namespace exists: connect it, then answer init.
    pub fn attach(&mut self, pid: Pid) -> Result<()> {
        let Some(r) = self.ready.take() else {
            return Ok(());
        };
        let mut b = [0u8; 1];
        if !matches!(nix::unistd::read(&r, &mut b), Ok(1)) {
            // Init failed before; it says why on the error pipe.
            return Ok(());
        }
        let res = self.connect(pid.as_raw() as u32);
        if let Some(w) = self.answer.take() {
            let msg = match &res {
                Ok(()) => "OK".to_string(),
                Err(e) => format!("ERR {e}"),
            };
            let _ = nix::unistd::write(&w, msg.as_bytes());
        }
        res
    }

    fn connect(&self, pid: u32) -> Result<()> {
        if self.pasta {
            return pasta::start(pid, &self.ports, &self.netns_file);
        }
        let mut nl = Netlink::open().map_err(|e| err!("cannot open netlink: {e}"))?;
        for (i, (net, _)) in self.links.iter().enumerate() {
            let br = ensure_bridge(&mut nl, net)?;
            let host = host_veth(&self.id, i);
            let _ = nl.delete(&host);
            nl.add_veth(&host, &format!("eth{i}"), pid, MTU)
                .map_err(|e| err!("cannot create the veth pair {host}: {e}"))?;
            let idx = nl
                .index(&host)
                .map_err(|e| err!("cannot find {host}: {e}"))?
                .ok_or_else(|| err!("the veth {host} vanished"))?;
            nl.set_up(idx, Some(br))
                .map_err(|e| err!("cannot attach {host} to {}: {e}", net.bridge))?;
        }
        if let (false, Some((_, ip))) = (self.ports.is_empty(), self.links.first()) {
            nft::add_ports(&self.id, &ip.to_string(), &self.ports)?;
        }
        Ok(())
    }
}

/// Connect running container `id` (init `pid`) to `net` now, as its `n`th interface: the
/// veth pair, then the address set from a thread that joined the container's namespace
/// (setns changes only the calling thread's network namespace).
pub fn hot_plug(net: &Network, id: &str, n: usize, pid: u32, ip: Ipv4Addr) -> Result<()> {
    let mut nl = Netlink::open().map_err(|e| err!("cannot open netlink: {e}"))?;
    let br = ensure_bridge(&mut nl, net)?;
    let host = host_veth(id, n);
    let peer = format!("eth{n}");
    nl.add_veth(&host, &peer, pid, MTU)
        .map_err(|e| err!("cannot create the veth pair {host}: {e}"))?;
    let idx = nl
        .index(&host)
        .map_err(|e| err!("cannot find {host}: {e}"))?
        .ok_or_else(|| err!("the veth {host} vanished"))?;
    nl.set_up(idx, Some(br))
        .map_err(|e| err!("cannot attach {host} to {}: {e}", net.bridge))?;
    let ns = File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| err!("cannot open the container's network namespace: {e}"))?;
    let prefix = net.prefix();
    let configured = std::thread::spawn(move || -> Result<()> {
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| err!("cannot enter the container's network namespace: {e}"))?;
        let mut nl = Netlink::open().map_err(|e| err!("cannot open netlink: {e}"))?;
        let idx = nl
            .index(&peer)
            .map_err(|e| err!("cannot find {peer}: {e}"))?
            .ok_or_else(|| err!("the interface {peer} did not arrive"))?;
        nl.add_address(idx, ip, prefix)
            .map_err(|e| err!("cannot set {peer}'s address: {e}"))?;
        nl.set_up(idx, None)
            .map_err(|e| err!("cannot bring up {peer}: {e}"))
    })
    .join()
    .map_err(|_| err!("the thread configuring the container's interface failed"))?;
    if configured.is_err() {
        let _ = nl.delete(&host);
    }
    configured
}
