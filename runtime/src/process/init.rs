//! PID 1 of a container: finish the namespaces and mounts, then become the command (docker's
//! default) or, with `--init`, start it and reap zombies and forward signals until it exits,
//! and exit with its status (docker-init's, tini's job).
//!
//! A PID 1 has no default signal actions, so every signal is blocked and taken with sigwait:
//! blocked signals are queued even for init, and nothing runs in signal context.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::isolation::{caps, devices, rootfs, security};
use crate::process::user;
use crate::process::{self, fail, Target};
use crate::spec::{ContainerConfig, Volume};
use crate::util::Result;
use strata_sys::{self as sys, Forked};

/// How a container with `-t` gets its terminal: a pty of its own devpts (so `tty` says
/// /dev/pts/N), which the supervisor allocates once init has mounted it.
pub struct Tty {
    /// Init writes one byte here when /dev/pts is mounted and the root pivoted.
    pub ready: OwnedFd,
    /// The supervisor answers with the slave's path ("/dev/pts/N"), or closes it on failure.
    pub answer: OwnedFd,
}

/// Ask the supervisor for the pty and open its slave; bind it to /dev/console.
fn open_tty(t: &Tty) -> Result<OwnedFd> {
    use nix::fcntl::OFlag;
    nix::unistd::write(&t.ready, b"t").map_err(|e| crate::err!("cannot ask for a pty: {e}"))?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < buf.len() {
        match nix::unistd::read(&t.answer, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(crate::err!("cannot get the pty: {e}")),
        }
    }
    let path = std::str::from_utf8(&buf[..n]).unwrap_or_default();
    let valid = path
        .strip_prefix("/dev/pts/")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return Err(crate::err!(
            "the supervisor could not allocate a pty in the container's /dev/pts: run without -t"
        ));
    }
    let slave = nix::fcntl::open(
        path,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| crate::err!("cannot open the container's terminal {path}: {e}"))?;
    rootfs::bind_console(Path::new(path))?;
    Ok(slave)
}

/// Wait until the supervisor says init is in its cgroup: one zero byte, or the error.
fn wait_joined(fd: OwnedFd) -> Result<()> {
    let mut buf = [0u8; 512];
    let mut n = 0;
    while n < buf.len() {
        match nix::unistd::read(&fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(crate::err!(
                    "cannot learn whether the cgroup was joined: {e}"
                ))
            }
        }
    }
    match &buf[..n] {
        [0] => Ok(()),
        [] => Err(crate::err!(
            "the supervisor ended before init joined its cgroup"
        )),
        msg => Err(crate::err!("{}", String::from_utf8_lossy(msg))),
    }
}

/// The exit status a shell would report: the code, or 128+N when killed by signal N.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

fn setup(
    cfg: &ContainerConfig,
    merged: &Path,
    etc: &[Volume],
    tty: Option<&Tty>,
    net: &mut crate::network::ChildNet,
) -> Result<Option<OwnedFd>> {
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    // Networking (issue 17): join or create the network namespace, tell the supervisor.
    net.join()?;
    flags |= net.unshare_flags();
    unshare(flags).map_err(|e| crate::err!("cannot create namespaces: {e}"))?;
    net.announce()?;
    // The runtime's /etc files first: the user's volumes may replace them.
    let binds: Vec<Volume> = etc.iter().chain(&cfg.volumes).cloned().collect();
    rootfs::prepare(merged, &binds)?;
    devices::mount_all(merged, &cfg.security)?;
    rootfs::mount_extras(merged, &cfg.extras.tmpfs, cfg.extras.read_only)?;
    rootfs::pivot(merged)?;
    // docker's --privileged hides nothing of /proc and /sys.
    if !cfg.security.privileged {
        rootfs::mask_paths()?;
    }
    let slave = tty.map(open_tty).transpose()?;
    nix::unistd::sethostname(&cfg.hostname)
        .map_err(|e| crate::err!("cannot set the hostname: {e}"))?;
    // The supervisor moved the veths in meanwhile: configure them (and lo).
    net.configure()?;
    Ok(slave)
}

/// Resolve the user and environment inside the container root, and create the working
/// directory if the image lacks it (as docker does).
pub fn prepare_process(
    spec: &crate::spec::ProcessSpec,
    hostname: Option<&str>,
) -> Result<(user::ExecUser, Vec<String>)> {
    let u = user::resolve(Path::new("/"), &spec.user)?;
    let mut env = spec.env.clone();
    let has = |env: &[String], k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
    if !has(&env, "PATH") {
        env.push(format!("PATH={}", process::DEFAULT_PATH));
    }
    if let Some(h) = hostname {
        if !has(&env, "HOSTNAME") {
            env.push(format!("HOSTNAME={h}"));
        }
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", u.home));
    }
    if spec.tty && !has(&env, "TERM") {
        env.push("TERM=xterm".into());
    }
    if !Path::new(&spec.cwd).is_dir() {
        std::fs::create_dir_all(&spec.cwd)
            .map_err(|e| crate::err!("cannot create the working directory {}: {e}", spec.cwd))?;
        let _ = nix::unistd::chown(
            Path::new(&spec.cwd),
            Some(nix::unistd::Uid::from_raw(u.uid)),
            Some(nix::unistd::Gid::from_raw(u.gid)),
        );
    }
    Ok((u, env))
}

/// What the supervisor made ready for init before the fork.
pub struct Prepared {
    /// The capability set and compiled seccomp program.
    pub security: security::Prepared,
    /// Where the supervisor says init joined its cgroup (none without a cgroup).
    pub cgroup_joined: Option<OwnedFd>,
}

/// The container's PID 1 (a forked child in a new pid namespace, signals blocked): the
/// command itself, or with `--init` strata's reaper in front of it. Never returns.
pub fn container_main(
    cfg: &ContainerConfig,
    merged: &Path,
    etc: &[Volume],
    prepared: Prepared,
    tty: Option<Tty>,
    mut net: crate::network::ChildNet,
    err_fd: OwnedFd,
) -> ! {
    // This process runs strata (a host binary, with the host's environment and descriptors)
    // for the container's whole life: non-dumpable, the container's root (without
    // CAP_SYS_PTRACE) cannot open its /proc/1/exe, environ, fd or mem. Rootless, the
    // supervisor outside still opens /proc/1/root for the pty, so init becomes non-dumpable
    // once that is done (its exec'd command, accessible again, is what `exec` joins then).
    let rootless = crate::isolation::rootless::in_userns();
    let undumpable = || {
        if let Err(e) = nix::sys::prctl::set_dumpable(false) {
            fail(
                &err_fd,
                125,
                &format!("cannot make the container's init non-dumpable: {e}"),
            );
        }
    };
    if !rootless {
        undumpable();
    }
    let slave = match setup(cfg, merged, etc, tty.as_ref(), &mut net) {
        Ok(s) => s,
        Err(e) => fail(&err_fd, 125, &e.to_string()),
    };
    // Before the capabilities go: renaming (PR_SET_MM) needs CAP_SYS_RESOURCE. And before
    // init turns non-dumpable rootless: from then on its /proc/self files belong to the
    // host's root, so the fallback (writing over the argument area through
    // /proc/self/mem) would be refused. The command forked below execs, and so sheds the
    // new name.
    if cfg.extras.init {
        super::title::become_docker_init(&cfg.process.args);
    }
    if rootless {
        undumpable();
    }
    drop(tty);
    let (mut u, env) = match prepare_process(&cfg.process, Some(&cfg.hostname)) {
        Ok(x) => x,
        Err(e) => fail(&err_fd, 125, &e.to_string()),
    };
    for g in &cfg.extras.group_add {
        match user::resolve_group(Path::new("/"), g) {
            Ok(n) if !u.groups.contains(&n) => u.groups.push(n),
            Ok(_) => {}
            Err(e) => fail(&err_fd, 125, &e.to_string()),
        }
    }
    if let Err(e) = super::limits::apply(&cfg.extras.ulimits) {
        fail(&err_fd, 125, &e.to_string());
    }
    if let Some(s) = &slave {
        // The terminal belongs to the user the command runs as (as docker does).
        let _ = nix::unistd::fchown(s, Some(nix::unistd::Uid::from_raw(u.uid)), None);
    }
    // The supervisor moves init into its cgroup while init sets up its root (a first
    // cgroup v1 write waits out an RCU grace period, ~9 ms here); nothing of the
    // container's own runs before it is in.
    let Prepared {
        security,
        cgroup_joined,
    } = prepared;
    if let Some(fd) = cgroup_joined {
        if let Err(e) = wait_joined(fd) {
            fail(&err_fd, 125, &e.to_string());
        }
    }
    let applied = match security::apply_prepared(&cfg.security, security) {
        Ok(a) => a,
        Err(e) => fail(&err_fd, 125, &e.to_string()),
    };
    let target = Target {
        args: &cfg.process.args,
        env: &env,
        cwd: &cfg.process.cwd,
        user: &u,
        caps: &applied.caps,
    };
    if !cfg.extras.init {
        // As docker: the command itself is PID 1 (images with their own init need that).
        process::exec(&target, slave, &err_fd)
    }
    // SAFETY: the container's init is single-threaded (a forked child that starts no thread).
    #[allow(unsafe_code)]
    let forked = unsafe { sys::fork() };
    let child = match forked {
        Ok(Forked::Child) => process::exec(&target, slave, &err_fd),
        Ok(Forked::Parent(pid)) => pid,
        Err(e) => fail(&err_fd, 125, &format!("cannot fork: {e}")),
    };
    // Init keeps only the container's capabilities too (it kept more for the fork's setuid).
    if caps::finish(&applied.caps).is_err() {
        let _ = kill(child, Signal::SIGKILL);
        fail(&err_fd, 125, "cannot drop the init's capabilities");
    }
    // Only the command (until it execs) may report errors; the terminal belongs to it alone.
    drop(err_fd);
    drop(slave);
    sys::exit_now(reap_until(child))
}

/// Wait for `child`, forwarding signals to it and reaping every other process; its exit code.
pub fn reap_until(child: Pid) -> i32 {
    let all = handled_signals();
    loop {
        // Reap first: SIGCHLD may have arrived before the signals were waited for.
        loop {
            match waitpid(
                None::<Pid>,
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
            ) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(st) => {
                    if st.pid() == Some(child) {
                        if let Some(code) = exit_code(st) {
                            return code;
                        }
                    }
                }
            }
        }
        match all.wait() {
            Ok(Signal::SIGCHLD) => {}
            Ok(sig) => {
                let _ = kill(child, sig);
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
}

/// The signals strata blocks and takes with sigwait: every standard signal but the
/// synchronous faults (which must keep their default action) and SIGKILL/SIGSTOP.
pub fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in Signal::iterator() {
        if !matches!(
            sig,
            Signal::SIGKILL
                | Signal::SIGSTOP
                | Signal::SIGSEGV
                | Signal::SIGBUS
                | Signal::SIGILL
                | Signal::SIGFPE
                | Signal::SIGTRAP
                | Signal::SIGSYS
        ) {
            set.add(sig);
        }
    }
    set
}
