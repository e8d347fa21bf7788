//! Rootless networking through pasta (Debian's `passt` package): an unprivileged process
//! that gives the container's namespace a copy of the host's addresses and routes and
//! relays its traffic through ordinary host sockets, `-p` ports included. pasta forks
//! into the background once the namespace is configured and exits when it disappears.

use std::path::{Path, PathBuf};
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

/// pasta's arguments for the namespace bound at `netns`, publishing `ports`.
pub fn args(netns: &Path, ports: &[PortMapping]) -> Vec<String> {
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
    // pasta runs as the supervisor's root of the container's user namespace (which owns
    // the network namespace), not as "nobody", which has no mapping there.
    a.extend([
        "--runas".into(),
        "0:0".into(),
        "--pid".into(),
        pid_file(netns).display().to_string(),
        "--netns".into(),
        netns.display().to_string(),
    ]);
    a
}

/// Where pasta writes its pid: beside the namespace file, in the container's directory.
fn pid_file(netns: &Path) -> PathBuf {
    netns.with_file_name("pasta.pid")
}

/// Stop the pasta of the container whose namespace file is `netns`, if it still runs.
/// pasta quits by itself when the namespace goes, but not always when the container's
/// directory is removed under it; a container's cleanup must not depend on that.
pub fn stop(netns: &Path) {
    let file = pid_file(netns);
    let Ok(text) = std::fs::read_to_string(&file) else {
        return;
    };
    if let Ok(pid) = text.trim().parse::<i32>() {
        // Only a pasta: the pid may have been reused since.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if pid > 1 && matches!(comm.trim(), "pasta" | "passt" | "pasta.avx2" | "passt.avx2") {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    let _ = std::fs::remove_file(&file);
}

/// Start pasta for container init `pid` and wait until it has configured the namespace.
/// pasta drops its capabilities before it opens the namespace, so /proc/PID/ns/net (a
/// process with more capabilities) is refused to it: the supervisor binds the namespace
/// on `netns` (a file in the container's directory, in its private mount namespace) for
/// pasta to open, and detaches it once pasta holds the namespace.
pub fn start(pid: u32, ports: &[PortMapping], netns: &Path) -> Result<()> {
    let bin = binary().ok_or_else(|| {
        err!("rootless bridge networking needs pasta: install Debian's passt package, or use --net host")
    })?;
    // pasta opens the tun device inside the container's namespace; its own message for a
    // device this user may not open ("Failed to open tun socket") names no remedy.
    if nix::unistd::access(
        "/dev/net/tun",
        nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK,
    )
    .is_err()
    {
        return Err(err!(
            "rootless networking needs /dev/net/tun readable and writable by you (as \
             distributions ship it: `chmod 0666 /dev/net/tun` as root), or run with --network none"
        ));
    }
    std::fs::write(netns, b"").map_err(|e| err!("cannot create {}: {e}", netns.display()))?;
    let src = format!("/proc/{pid}/ns/net");
    nix::mount::mount(
        Some(src.as_str()),
        netns,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| err!("cannot bind the container's network namespace for pasta: {e}"))?;
    let out = Command::new(&bin)
        .args(args(netns, ports))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| err!("cannot run {}: {e}", bin.display()));
    let _ = nix::mount::umount2(netns, nix::mount::MntFlags::MNT_DETACH);
    let out = out?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        return Err(err!(
            "pasta failed: {}",
            msg.lines().last().unwrap_or("no message")
        ));
    }
    Ok(())
}
