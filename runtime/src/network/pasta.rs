//! Rootless networking through pasta (Debian's `passt` package): an unprivileged process
//! that gives the container's namespace a copy of the host's addresses and routes and
//! relays its traffic through ordinary host sockets, `-p` ports included. pasta forks
//! into the background once the namespace is configured and exits when it disappears.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::err;
use crate::spec::PortMapping;
use crate::util::Result;

/// pasta's path, if it is installed.
pub fn binary() -> Option<PathBuf> {
    ["/usr/bin/pasta", "/usr/local/bin/pasta", "/usr/sbin/pasta"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// pasta's arguments for container init `pid` publishing `ports`.
pub fn args(pid: u32, ports: &[PortMapping]) -> Vec<String> {
    let mut a: Vec<String> = vec!["--config-net".into(), "--quiet".into()];
    for proto in ["tcp", "udp"] {
        let specs: Vec<String> = ports
            .iter()
            .filter(|p| p.proto == proto)
            .map(|p| {
                let ip = if p.host_ip == "0.0.0.0" {
                    String::new()
                } else {
                    format!("{}/", p.host_ip)
                };
                format!("{ip}{}:{}", p.host_port, p.container_port)
            })
            .collect();
        let flag = if proto == "tcp" { "-t" } else { "-u" };
        if specs.is_empty() {
            a.extend([flag.to_string(), "none".into()]);
        }
        for s in specs {
            a.extend([flag.to_string(), s]);
        }
    }
    // Nothing the container binds is forwarded back to the host's loopback.
    a.extend(["-T", "none", "-U", "none"].map(String::from));
    a.extend([
        "--netns".into(),
        format!("/proc/{pid}/ns/net"),
        "--userns".into(),
        format!("/proc/{pid}/ns/user"),
    ]);
    a
}

/// Start pasta for container init `pid` and wait until it has configured the namespace.
pub fn start(pid: u32, ports: &[PortMapping]) -> Result<()> {
    let bin = binary().ok_or_else(|| {
        err!("rootless bridge networking needs pasta: install Debian's passt package, or use --net host")
    })?;
    let out = Command::new(&bin)
        .args(args(pid, ports))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| err!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        return Err(err!(
            "pasta failed: {}",
            msg.lines().last().unwrap_or("no message")
        ));
    }
    Ok(())
}
