//! What a crash leaves on the host: processes, daemons, mounts and cgroups.

use super::*;

pub(crate) fn poll(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process that exists and is not a zombie.
pub(crate) fn alive(pid: i32) -> bool {
    start_time(pid).is_some()
}

pub(crate) fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Start time (clock ticks since boot) of a live, non-zombie process.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = s.get(s.rfind(')')? + 2..)?.split(' ');
    if matches!(f.next(), Some("Z" | "X") | None) {
        return None;
    }
    f.nth(18)?.parse().ok()
}

/// A container as the host sees it, to find what is left of it.
pub(crate) struct Procs {
    pub(crate) id: String,
    /// Its init (pid, start time) and pid namespace (/proc/PID/ns/pid text), when known.
    /// Namespace inode numbers are reused once a namespace is gone (by the next container
    /// of any test), so it only names this container while its init lives; init's death
    /// takes the whole namespace with it.
    pub(crate) init: Option<(i32, u64, String)>,
}

impl Procs {
    pub(crate) fn of(id: &str, init: Option<i32>) -> Procs {
        let init = init.and_then(|pid| {
            let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
            Some((pid, start_time(pid)?, ns.to_string_lossy().into_owned()))
        });
        Procs {
            id: id.to_string(),
            init,
        }
    }

    /// Live processes of the container: in its cgroup, or in its pid namespace.
    pub(crate) fn left(&self) -> Vec<i32> {
        let cg = format!("/strata/{}", self.id);
        let ns = self
            .init
            .as_ref()
            .filter(|(pid, start, _)| start_time(*pid) == Some(*start))
            .map(|(_, _, ns)| ns);
        all_pids()
            .into_iter()
            .filter(|p| {
                let in_cg = std::fs::read_to_string(format!("/proc/{p}/cgroup"))
                    .is_ok_and(|c| c.lines().any(|l| l.ends_with(&cg)));
                let in_ns = ns.is_some_and(|ns| {
                    std::fs::read_link(format!("/proc/{p}/ns/pid"))
                        .is_ok_and(|l| l.to_string_lossy() == *ns)
                });
                (in_cg || in_ns) && alive(*p)
            })
            .collect()
    }
}

/// Live processes whose command line names `dir`: strata's supervisors, their forked
/// container inits and mount helpers, and the FUSE daemons of a store.
pub(crate) fn procs_naming(dir: &Path) -> Vec<i32> {
    let want = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|p| {
            *p != me
                && std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                    c.split(|b| *b == 0)
                        .any(|a| String::from_utf8_lossy(a).contains(&want))
                })
                && alive(*p)
        })
        .collect()
}

/// The FUSE daemons serving the union whose upper is `upper` (its `-o` names it).
pub(crate) fn fuse_daemons(upper: &Path) -> Vec<i32> {
    let want = format!("upperdir={},", upper.display());
    all_pids()
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                c.split(|b| *b == 0)
                    .any(|a| String::from_utf8_lossy(a).contains(&want))
            }) && alive(*p)
        })
        .collect()
}

/// Mount points at or under `dir` in this (the host's) mount namespace.
pub(crate) fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == prefix || m.starts_with(&format!("{prefix}/")))
        .map(str::to_string)
        .collect()
}

/// The container's cgroup directories under every hierarchy (v1) or the unified one (v2).
pub(crate) fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    ["memory", "pids", "cpu", "cpuacct", "devices", "freezer"]
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c).join("strata").join(id))
        .chain([Path::new("/sys/fs/cgroup/strata").join(id)])
        .collect()
}

pub(crate) fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Nothing of container `id` is left running, mounted or in a cgroup, and no strata
/// process (supervisor, init, FUSE daemon) of the store remains.
pub(crate) fn assert_nothing_left(e: &Env, id: &str, procs: &Procs, when: &str) {
    poll(
        &format!("the container's processes to end ({when})"),
        20,
        || procs.left().is_empty(),
    );
    let m = mounts_under(&e.container_dir(id));
    assert!(m.is_empty(), "{when}: mounts left behind: {m:?}");
    for d in cgroup_dirs(id) {
        assert!(!d.exists(), "{when}: cgroup {} left behind", d.display());
    }
    // A FUSE daemon exits once its mount is gone, which it learns a moment later.
    let mut left = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        left = procs_naming(&e.root());
        if left.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cmds: Vec<String> = left
        .iter()
        .map(|p| {
            let c = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            format!("{p}: {}", String::from_utf8_lossy(&c).replace('\0', " "))
        })
        .collect();
    panic!("{when}: strata processes of the store left: {cmds:#?}");
}
