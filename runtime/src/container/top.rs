//! `strata top`: the processes of a running container, read from its cgroup and /proc.

use crate::container::{self, Status};
use crate::err;
use crate::isolation::cgroups;
use crate::store::Store;
use crate::util::Result;

/// One process of a container.
#[derive(Debug, Clone)]
pub struct Proc {
    /// Host pid.
    pub pid: i32,
    /// Parent's host pid.
    pub ppid: i32,
    /// Real uid (host view).
    pub uid: u32,
    /// CPU time used, seconds.
    pub cpu_secs: u64,
    /// Command line (the name in brackets when it has none).
    pub cmd: String,
}

fn read(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces: fields follow the last ')'.
    let close = stat.rfind(')')?;
    let name = stat.get(stat.find('(')? + 1..close)?.to_string();
    let f: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    let ppid = f.get(1)?.parse().ok()?;
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap_or(0);
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let hz = 100;
    Some(Proc {
        pid,
        ppid,
        uid,
        cpu_secs: ticks / hz,
        cmd: if cmd.is_empty() {
            format!("[{name}]")
        } else {
            cmd
        },
    })
}

/// The processes of running container `id`, by pid.
pub fn top(store: &Store, id: &str) -> Result<Vec<Proc>> {
    let st = container::reconcile(store, id)?;
    if st.status != Status::Running {
        return Err(err!("container {id} is not running"));
    }
    let mut pids = cgroups::existing(id).pids();
    if pids.is_empty() {
        pids.extend(st.pid);
    }
    Ok(pids.into_iter().filter_map(read).collect())
}
