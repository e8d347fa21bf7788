//! What the run holds on the host: processes, threads, fds, mounts and cgroups.

use super::*;

pub(crate) fn proc_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The FUSE daemon serving `merged`: `strata -o OPTIONS MERGED`, forked by the driver.
pub(crate) fn daemon_of(merged: &Path) -> Option<i32> {
    let want = merged.to_string_lossy();
    proc_pids().into_iter().find(|&pid| {
        let a = cmdline(pid);
        a.len() >= 3 && a.iter().any(|x| x == "-o") && a.last().is_some_and(|m| *m == *want)
    })
}

/// Processes whose command line names a path under `root` (daemons and supervisors of this
/// test's store).
pub(crate) fn pids_mentioning(root: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let r = root.to_string_lossy();
    proc_pids()
        .into_iter()
        .filter(|&p| p != me && cmdline(p).iter().any(|a| a.contains(&*r)))
        .collect()
}

pub(crate) fn mounts_under(root: &Path) -> Vec<String> {
    let r = root.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&r))
        .map(str::to_string)
        .collect()
}

pub(crate) fn pids_in_cgroup(id: &str) -> Vec<i32> {
    proc_pids()
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cgroup"))
                .is_ok_and(|c| c.contains(&format!("strata/{id}")))
        })
        .collect()
}

pub(crate) fn describe_threads(pid: i32) -> String {
    let mut s = format!("-- pid {pid}: {}\n", cmdline(pid).join(" "));
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return s + "   (gone)\n";
    };
    for t in tasks.flatten() {
        let d = t.path();
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
        let state = read("status")
            .lines()
            .find(|l| l.starts_with("State:"))
            .unwrap_or_default()
            .to_string();
        let _ = writeln!(
            s,
            "   task {} {} {} wchan={}",
            t.file_name().to_string_lossy(),
            read("comm").trim(),
            state,
            read("wchan")
        );
        for l in read("stack").lines() {
            let _ = writeln!(s, "      {l}");
        }
    }
    s
}

pub(crate) fn status_field(pid: i32, key: &str) -> Option<u64> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = st.lines().find(|l| l.starts_with(key))?;
    l[key.len()..].split_whitespace().next()?.parse().ok()
}

pub(crate) fn fd_count(pid: i32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

pub(crate) fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    ["memory", "pids", "cpu", "devices"]
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c).join("strata").join(id))
        .chain([Path::new("/sys/fs/cgroup/strata").join(id)])
        .collect()
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}
