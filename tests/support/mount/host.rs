//! The host side of mounts: the mount table, daemon processes, waiting and unmounting.

use super::*;

/// Mount points (from /proc/self/mountinfo) at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().to_string();
    let mut v: Vec<String> = mount_points()
        .into_iter()
        .filter(|m| m == &d || m.starts_with(&format!("{d}/")))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// All mount points of this mount namespace.
pub fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape_mountinfo))
        .collect()
}

/// The filesystem type mounted at `p` (last mount wins), if any.
pub fn mount_fstype(p: &Path) -> Option<String> {
    let want = p.to_string_lossy().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found = None;
    for l in info.lines() {
        let fields: Vec<&str> = l.split(' ').collect();
        if fields.len() > 4 && unescape_mountinfo(fields[4]) == want {
            if let Some(dash) = fields.iter().position(|f| *f == "-") {
                found = fields.get(dash + 1).map(|s| s.to_string());
            }
        }
    }
    found
}

pub fn is_mounted(p: &Path) -> bool {
    let want = p.to_string_lossy().to_string();
    mount_points().contains(&want)
}

/// Live (non-zombie) processes other than us with an argument equal to `arg`.
pub fn pids_with_arg(arg: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me || !pid_alive(pid) {
            continue;
        }
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmd.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// Whether `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .chars()
                .next();
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// Poll `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Unmount `mnt`: plain umount, retrying EBUSY for a while, then a lazy detach.
pub fn unmount_path(mnt: &Path) -> Result<(), Errno> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sys::umount2(mnt, 0) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()), // not mounted
            Err(Errno::EBUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(Errno::EBUSY) => return sys::umount2(mnt, libc::MNT_DETACH),
            Err(e) => return Err(e),
        }
    }
}

/// Wait for the given daemons to exit after an unmount; SIGKILL the ones that do not.
pub fn reap_daemons(pids: &[i32]) {
    if wait_until(Duration::from_secs(10), || {
        pids.iter().all(|p| !pid_alive(*p))
    }) {
        return;
    }
    for p in pids {
        if pid_alive(*p) {
            eprintln!("daemon {p} still alive after unmount: SIGKILL");
            let _ = sys::kill(*p, libc::SIGKILL);
        }
    }
    wait_until(Duration::from_secs(5), || {
        pids.iter().all(|p| !pid_alive(*p))
    });
}
