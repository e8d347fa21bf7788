//! A bridged container's /etc/hosts and /etc/resolv.conf, written in its directory and
//! bound over the image's.
//!
//! Names on user networks resolve through /etc/hosts rather than an embedded DNS server:
//! every member's file lists every member of its user networks, and is rewritten in place
//! (the bind mount follows the inode) when a member starts or is removed. Static files
//! need no server process per container, work for static binaries that never read
//! nsswitch/DNS, and cannot send a query off the machine.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::spec::{load_config, ContainerConfig, Paths};
use crate::store::Store;
use crate::util::{Ctx, Result};

use super::records::{self, Network, DEFAULT};

/// Public resolvers used instead of a host's loopback ones (systemd-resolved's
/// 127.0.0.53, a local dnsmasq), which a container's own loopback does not have; docker
/// does the same.
const FALLBACK_DNS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// The container's resolv.conf: the host's, with loopback nameservers replaced.
pub fn resolv_conf(host: &str) -> String {
    let is_loop = |l: &str| {
        l.split_whitespace().nth(1).is_some_and(|a| {
            a.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
        })
    };
    let servers = |l: &&str| l.trim_start().starts_with("nameserver");
    let loopback = host.lines().filter(servers).any(is_loop);
    let mut out: Vec<String> = host
        .lines()
        .filter(|l| !(loopback && servers(l)))
        .map(str::to_string)
        .collect();
    if loopback || !host.lines().any(|l| servers(&l)) {
        out.extend(FALLBACK_DNS.iter().map(|s| format!("nameserver {s}")));
    }
    out.join("\n") + "\n"
}

/// `--dns` servers in place of the file's nameservers (its search and options lines kept).
pub fn with_dns(resolv: &str, dns: &[String]) -> String {
    if dns.is_empty() {
        return resolv.to_string();
    }
    let mut text: String = dns.iter().map(|d| format!("nameserver {d}\n")).collect();
    for l in resolv
        .lines()
        .filter(|l| !l.trim_start().starts_with("nameserver"))
    {
        text.push_str(l);
        text.push('\n');
    }
    text
}

/// The container's hosts file: localhost, itself on each network, and on user networks
/// every other member by name.
fn hosts_text(store: &Store, cfg: &ContainerConfig, nets: &[(Network, Ipv4Addr)]) -> String {
    let h = &cfg.hostname;
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (net, ip) in nets {
        if cfg.name == *h {
            s.push_str(&format!("{ip}\t{h}\n"));
        } else {
            s.push_str(&format!("{ip}\t{h} {}\n", cfg.name));
        }
        if net.name == DEFAULT {
            continue;
        }
        for (id, addr) in &net.members {
            if *id == cfg.id {
                continue;
            }
            if let Ok(other) = load_config(store, id) {
                s.push_str(&format!("{addr}\t{}\n", other.name));
            }
        }
    }
    // --add-host NAME:IP lines, appended as docker does.
    for (name, ip) in cfg
        .extras
        .add_hosts
        .iter()
        .filter_map(|a| a.split_once(':'))
    {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    s
}

/// Write `path` in place (truncate and write, same inode), so a running container whose
/// /etc file is bound to it sees the new text.
fn rewrite(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).ctx(|| format!("cannot write {}", path.display()))
}

/// Write container `cfg`'s hosts and resolv.conf; their paths.
pub fn write_files(
    store: &Store,
    cfg: &ContainerConfig,
) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let p = Paths::new(store, &cfg.id);
    let nets = records::memberships(store, &cfg.id, &cfg.network)?;
    let hosts = p.dir.join("hosts");
    rewrite(&hosts, &hosts_text(store, cfg, &nets))?;
    let resolv = p.dir.join("resolv.conf");
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    rewrite(&resolv, &with_dns(&resolv_conf(&host), &cfg.extras.dns))?;
    Ok((hosts, resolv))
}

/// Rewrite the hosts file of every other member of `net` that has one (it was started).
pub fn refresh_members(store: &Store, net: &Network, except: &str) {
    if net.name == DEFAULT {
        return;
    }
    for id in net.members.keys().filter(|i| *i != except) {
        let hosts = Paths::new(store, id).dir.join("hosts");
        if !hosts.exists() {
            continue;
        }
        if let Ok(cfg) = load_config(store, id) {
            if let Ok(nets) = records::memberships(store, id, &cfg.network) {
                let _ = rewrite(&hosts, &hosts_text(store, &cfg, &nets));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resolv_conf;

    #[test]
    fn loopback_resolvers_are_replaced() {
        let r = resolv_conf("search lan\nnameserver 127.0.0.53\noptions edns0\n");
        assert_eq!(
            r,
            "search lan\noptions edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf("nameserver 10.0.0.2\n"),
            "nameserver 10.0.0.2\n"
        );
    }
}
