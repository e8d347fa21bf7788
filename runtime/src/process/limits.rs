//! `--ulimit`: the resource limits set in the container's PID 1 before the command starts
//! (inherited by everything it runs).

use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};

use crate::err;
use crate::spec::Ulimit;
use crate::util::Result;

fn resource(name: &str) -> Option<Resource> {
    Some(match name {
        "core" => Resource::RLIMIT_CORE,
        "cpu" => Resource::RLIMIT_CPU,
        "data" => Resource::RLIMIT_DATA,
        "fsize" => Resource::RLIMIT_FSIZE,
        "locks" => Resource::RLIMIT_LOCKS,
        "memlock" => Resource::RLIMIT_MEMLOCK,
        "msgqueue" => Resource::RLIMIT_MSGQUEUE,
        "nice" => Resource::RLIMIT_NICE,
        "nofile" => Resource::RLIMIT_NOFILE,
        "nproc" => Resource::RLIMIT_NPROC,
        "rss" => Resource::RLIMIT_RSS,
        "rtprio" => Resource::RLIMIT_RTPRIO,
        "rttime" => Resource::RLIMIT_RTTIME,
        "sigpending" => Resource::RLIMIT_SIGPENDING,
        "stack" => Resource::RLIMIT_STACK,
        _ => return None,
    })
}

/// Set each limit on this process.
pub fn apply(limits: &[Ulimit]) -> Result<()> {
    let v = |n: i64| if n < 0 { RLIM_INFINITY } else { n as u64 };
    for l in limits {
        let r = resource(&l.name).ok_or_else(|| err!("unknown --ulimit {}", l.name))?;
        setrlimit(r, v(l.soft), v(l.hard))
            .map_err(|e| err!("cannot set --ulimit {}={}:{}: {e}", l.name, l.soft, l.hard))?;
    }
    Ok(())
}
