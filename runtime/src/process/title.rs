//! `--init`: the reaper in front of the command shows as docker's does
//! (`/sbin/docker-init -- CMD...`), never with the host's `strata run ...` command line it
//! was forked from.

use std::io::{Seek, SeekFrom, Write};

use crate::sys;

/// The name `--init`'s reaper shows in the container (docker-init's).
pub const INIT_PATH: &str = "/sbin/docker-init";

/// Rename this process (comm and cmdline) to docker-init's. Best effort: a failure leaves
/// the old name, nothing else.
pub fn become_docker_init(args: &[String]) {
    let _ = nix::sys::prctl::set_name(c"docker-init");
    let mut title = Vec::new();
    for a in [INIT_PATH, "--"]
        .into_iter()
        .chain(args.iter().map(String::as_str))
    {
        title.extend_from_slice(a.as_bytes());
        title.push(0);
    }
    // The environment area is the host's (the supervisor's): nothing of it stays readable.
    let _ = overwrite_area(50, b"");
    if sys::set_cmdline(title).is_err() {
        // Without CAP_SYS_RESOURCE (rootless, or a host that withholds it): overwrite the
        // old area in place, setproctitle-style.
        let spaced = [INIT_PATH, "--"]
            .into_iter()
            .chain(args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = overwrite_area(48, spaced.as_bytes());
    }
}

/// Write `text` over one of this process's areas, `field` being the /proc/self/stat field
/// (counted from 1, the pid) of its start: 48 argv (arg_start, arg_end), 50 the
/// environment (env_start, env_end); the rest is zeroed. For argv
/// it is setproctitle-style: a non-NUL last byte tells the kernel to show the area up to
/// its first NUL.
fn overwrite_area(field: usize, text: &[u8]) -> std::io::Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // After the ')' of the command name comes field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(field.saturating_sub(3))
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    let [start, end] = f[..] else {
        return Err(std::io::Error::other("no such area in /proc/self/stat"));
    };
    let len = end.saturating_sub(start) as usize;
    if len < 2 {
        return Ok(());
    }
    let mut buf = vec![0u8; len];
    if !text.is_empty() {
        let n = text.len().min(len - 2);
        buf[..n].copy_from_slice(&text[..n]);
        buf[len - 1] = b' ';
    }
    let mut mem = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")?;
    mem.seek(SeekFrom::Start(start))?;
    mem.write_all(&buf)
}
