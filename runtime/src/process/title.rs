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
    if sys::set_cmdline(title).is_err() {
        // Without CAP_SYS_RESOURCE (rootless, or a host that withholds it): overwrite the
        // old area in place, setproctitle-style.
        let spaced = [INIT_PATH, "--"]
            .into_iter()
            .chain(args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = overwrite_in_place(spaced.as_bytes());
    }
}

/// Write `title` over the original argv (truncated to its size), setproctitle-style: a
/// non-NUL last byte tells the kernel to show the area up to its first NUL.
fn overwrite_in_place(title: &[u8]) -> std::io::Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the ')' of the command name; arg_start and arg_end are fields 48 and 49.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(45)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    let [start, end] = f[..] else {
        return Err(std::io::Error::other("no argument area in /proc/self/stat"));
    };
    let len = end.saturating_sub(start) as usize;
    if len < 2 {
        return Ok(());
    }
    let mut buf = vec![0u8; len];
    let n = title.len().min(len - 2);
    buf[..n].copy_from_slice(&title[..n]);
    buf[len - 1] = b' ';
    let mut mem = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")?;
    mem.seek(SeekFrom::Start(start))?;
    mem.write_all(&buf)
}
