//! `-p [IP:][HOST:]CONTAINER[/tcp|/udp]` and `-P` into port mappings; their docker-style
//! text (`0.0.0.0:8080->80/tcp`).

use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use crate::err;
use crate::spec::PortMapping;
use crate::util::Result;

fn port(s: &str, what: &str, spec: &str) -> Result<u16> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(err!(
            "invalid {what} port {s:?} in -p {spec:?}: use a number from 1 to 65535"
        )),
    }
}

/// A free port on `ip` for `proto`, chosen by the kernel (as docker does for `-p 80`).
fn free_port(ip: &str, proto: &str) -> Result<u16> {
    let got = match proto {
        "udp" => UdpSocket::bind((ip, 0)).and_then(|s| s.local_addr()),
        _ => TcpListener::bind((ip, 0)).and_then(|s| s.local_addr()),
    };
    got.map(|a| a.port())
        .map_err(|e| err!("cannot find a free {proto} port on {ip}: {e}"))
}

/// Parse one `-p` value; a missing host port is picked now and recorded.
pub fn parse(spec: &str) -> Result<PortMapping> {
    let (body, proto) = match spec.rsplit_once('/') {
        Some((b, p @ ("tcp" | "udp"))) => (b, p),
        Some((_, p)) => {
            return Err(err!(
                "invalid protocol {p:?} in -p {spec:?}: use tcp or udp"
            ))
        }
        None => (spec, "tcp"),
    };
    let parts: Vec<&str> = body.split(':').collect();
    let (ip, host, cont) = match parts.as_slice() {
        [c] => ("0.0.0.0", "", *c),
        [h, c] => ("0.0.0.0", *h, *c),
        [i, h, c] => (*i, *h, *c),
        _ => {
            return Err(err!(
                "invalid -p {spec:?}: use [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]"
            ))
        }
    };
    let ip = if ip.is_empty() { "0.0.0.0" } else { ip };
    ip.parse::<Ipv4Addr>()
        .map_err(|_| err!("invalid host address {ip:?} in -p {spec:?}: use an IPv4 address"))?;
    let container_port = port(cont, "container", spec)?;
    let host_port = if host.is_empty() {
        free_port(ip, proto)?
    } else {
        port(host, "host", spec)?
    };
    Ok(PortMapping {
        host_ip: ip.into(),
        host_port,
        container_port,
        proto: proto.into(),
    })
}

/// `-P`: every port the image exposes ("80/tcp"), each on a free host port.
pub fn exposed(keys: &[String]) -> Result<Vec<PortMapping>> {
    keys.iter()
        .map(|k| {
            let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            parse(&format!("{p}/{proto}"))
        })
        .collect()
}

/// Refuse two mappings of one host address, port and protocol.
pub fn check_unique(ports: &[PortMapping]) -> Result<()> {
    for (i, a) in ports.iter().enumerate() {
        if ports[..i].iter().any(|b| {
            b.host_port == a.host_port
                && b.proto == a.proto
                && (b.host_ip == a.host_ip || b.host_ip == "0.0.0.0" || a.host_ip == "0.0.0.0")
        }) {
            return Err(err!(
                "the host port {}/{} is published twice: give each -p its own host port",
                a.host_port,
                a.proto
            ));
        }
    }
    Ok(())
}

/// `0.0.0.0:8080->80/tcp`.
pub fn text(p: &PortMapping) -> String {
    format!(
        "{}:{}->{}/{}",
        p.host_ip, p.host_port, p.container_port, p.proto
    )
}

/// The lines of `strata port`: `80/tcp -> 0.0.0.0:8080`.
pub fn port_lines(ports: &[PortMapping]) -> Vec<String> {
    ports
        .iter()
        .map(|p| {
            format!(
                "{}/{} -> {}:{}",
                p.container_port, p.proto, p.host_ip, p.host_port
            )
        })
        .collect()
}
