//! `strata stats`: a container's resource use from its cgroups (v1 hybrid and v2): CPU
//! time, memory use and limit, number of tasks.

use std::path::PathBuf;

use crate::isolation::cgroups;

/// One reading of a container's counters.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// CPU time used so far, nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, bytes (page cache that can be dropped left out, as docker does).
    pub mem: u64,
    /// Memory limit, bytes (the host's memory when unlimited).
    pub mem_limit: u64,
    /// Tasks in the container.
    pub pids: u64,
}

fn read_u64(p: PathBuf) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn stat_field(p: PathBuf, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(p).ok()?;
    s.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some(key)).then(|| w.next()?.parse().ok())?
    })
}

/// The host's memory, bytes.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Read container `id`'s counters now (zeros for what its cgroups do not have).
pub fn sample(id: &str) -> Sample {
    let cg = cgroups::existing(id);
    let host = host_memory();
    let mut s = Sample {
        mem_limit: host,
        ..Sample::default()
    };
    for d in &cg.dirs {
        if let Some(v) = read_u64(d.join("cpuacct.usage")) {
            s.cpu_ns = v;
        }
        if let Some(v) = stat_field(d.join("cpu.stat"), "usage_usec") {
            s.cpu_ns = v * 1000;
        }
        if let Some(v) = read_u64(d.join("memory.usage_in_bytes")) {
            let inactive = stat_field(d.join("memory.stat"), "total_inactive_file").unwrap_or(0);
            s.mem = v.saturating_sub(inactive);
        }
        if let Some(v) = read_u64(d.join("memory.current")) {
            let inactive = stat_field(d.join("memory.stat"), "inactive_file").unwrap_or(0);
            s.mem = v.saturating_sub(inactive);
        }
        for f in ["memory.limit_in_bytes", "memory.max"] {
            if let Some(v) = read_u64(d.join(f)) {
                s.mem_limit = v.min(host);
            }
        }
        if let Some(v) = read_u64(d.join("pids.current")) {
            s.pids = v;
        }
    }
    if s.pids == 0 {
        s.pids = cg.pids().len() as u64;
    }
    s
}

/// CPU % between two samples `secs` apart, as docker counts it (100% = one CPU busy).
pub fn cpu_percent(before: &Sample, after: &Sample, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / (secs * 1e9) * 100.0
}
