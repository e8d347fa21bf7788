//! Supervising a container: mount the union, create cgroups, start the container's init in
//! new namespaces, relay the terminal and signals, record the exit, clean up.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use crate::container::{self, ContainerConfig, Paths, Status, Volume};
use crate::driver::{self, Driver};
use crate::isolation::cgroups;
use crate::process::init::{self, exit_code, Tty};
use crate::process::pty;

use super::logfile;
use crate::store::Store;
use crate::util::{now_secs, Ctx, Result};
use crate::{err, layer};
use strata_sys::{self as sys, Forked};

use super::delete::remove_files;

/// How a supervised container's stdio is wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// The user's terminal or pipes (foreground run).
    Foreground,
    /// The container log (detached).
    Log,
}

/// Report `msg` once on the detached supervisor's ready pipe (then closed), if any.
pub(crate) fn notify(ready: &mut Option<OwnedFd>, msg: &str) {
    if let Some(fd) = ready.take() {
        let _ = nix::unistd::write(fd.as_fd(), msg.as_bytes());
    }
}

/// Open `path` close-on-exec (mode 0640 when created).
pub(crate) fn open_fd(path: &Path, flags: OFlag) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        flags | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .ctx(|| format!("cannot open {}", path.display()))
}

/// Unmount the union and remove the cgroups of a container that is not running.
pub fn cleanup(store: &Store, id: &str) -> Result<()> {
    let cg = cgroups::existing(id);
    let r1 = cg.remove();
    let r2 = driver::unmount(&Paths::new(store, id).merged());
    crate::network::pasta::stop(&Paths::new(store, id).dir.join("netns"));
    // Its veths and port rules (issue 17), also after a killed supervisor.
    let r3 = match container::load_config(store, id) {
        Ok(cfg) => crate::network::teardown(&cfg),
        Err(_) => Ok(()),
    };
    r1.and(r2).and(r3)
}

/// Run a container in the foreground, supervising it from this process; its exit status.
/// With `ready`, report "OK" or "ERR message" on it once the command has started (detached mode).
pub fn supervise(
    store: &Store,
    cfg: &ContainerConfig,
    io: Io,
    ready: &mut Option<OwnedFd>,
) -> Result<i32> {
    {
        let _lock = store.lock_exclusive()?;
        let mut st = container::load_state(store, &cfg.id)?;
        if st.status == Status::Running && container::init_alive(&st)
            || container::supervisor_alive(&st)
        {
            return Err(err!("container {} is already running", cfg.name));
        }
        // Recorded before anything is mounted, so that if this process dies while starting
        // the container, reconcile knows whose mount and cgroups are left to clean.
        st.supervisor = Some(std::process::id() as i32);
        st.supervisor_start = container::pid_start_time(std::process::id() as i32);
        // Once per start, not per restart: a stop between two runs must hold.
        st.stopping = false;
        container::save_state(store, &cfg.id, &st)?;
    }
    let paths = Paths::new(store, &cfg.id);
    let mounted = (|| {
        layer::check_present(store, &cfg.layers)?;
        if cfg.driver == Driver::Overlay.name()
            && crate::layer::native::any_native(store, &cfg.layers)
        {
            // Made at create; again here if it was removed meanwhile.
            let _lock = store.lock_exclusive()?;
            crate::layer::plain::materialize_all(store, &cfg.layers)?;
        }
        cleanup(store, &cfg.id)?;
        for d in [paths.upper(), paths.work(), paths.merged()] {
            std::fs::create_dir_all(&d).ctx(|| format!("cannot create {}", d.display()))?;
        }
        container::make_init_layer(&paths)?;
        let lowers = container::lower_dirs(store, cfg);
        let drv = Driver::from_name(&cfg.driver)?;
        driver::mount_union(
            drv,
            &lowers,
            &paths.upper(),
            &paths.work(),
            &paths.merged(),
            cfg.trace.as_ref(),
        )
    })();
    if let Err(e) = mounted {
        let _ = container::update_state(store, &cfg.id, |st| {
            st.supervisor = None;
            st.supervisor_start = None;
        });
        return Err(e);
    }
    let result = super::restart::with_policy(store, cfg, || {
        super::events::record(store, "start", cfg, &[]);
        supervise_mounted(store, cfg, io, ready)
    });
    let cleaned = cleanup(store, &cfg.id);
    if let Some(t) = &cfg.trace {
        // The daemon writes the trace's last line once the unmount reaches it.
        if !driver::wait_trace_end(&t.file, Duration::from_secs(10)) {
            tracing::warn!(
                "the trace {} has no end line yet: the mount daemon is still finishing it",
                t.file.display()
            );
        }
    }
    let (code, error) = match &result {
        Ok((code, msg)) => (Some(*code), msg.clone()),
        Err(e) => (None, Some(e.to_string())),
    };
    let final_state = container::update_state(store, &cfg.id, |st| {
        st.status = if st.started_at.is_some() || code.is_some() {
            Status::Exited
        } else {
            Status::Created
        };
        st.pid = None;
        st.pid_start = None;
        st.supervisor = None;
        st.supervisor_start = None;
        st.finished_at = Some(now_secs());
        st.exit_code = code.or(Some(125));
        st.stopping = false;
        st.error = error;
    });
    super::events::record(
        store,
        "die",
        cfg,
        &[("exitCode", code.unwrap_or(125).to_string())],
    );
    if cfg.auto_remove {
        remove_files(store, &cfg.id, true)?;
    } else {
        final_state?;
    }
    cleaned?;
    result.map(|(code, _)| code)
}

/// The files bound over the container's /etc, as docker does: /etc/hostname (the
/// container's own, written in its directory); with the host network the host's
/// /etc/resolv.conf and /etc/hosts read-only (a missing one is skipped); without a network
/// a small /etc/hosts naming localhost and the container.
pub fn etc_binds(store: &Store, paths: &Paths, cfg: &ContainerConfig) -> Result<Vec<Volume>> {
    let write = |name: &str, text: String| -> Result<PathBuf> {
        let p = paths.dir.join(name);
        std::fs::write(&p, text).ctx(|| format!("cannot write {}", p.display()))?;
        Ok(p)
    };
    let h = &cfg.hostname;
    let x = &cfg.extras;
    let mut binds = vec![Volume::bind(
        write("hostname", format!("{h}\n"))?,
        "/etc/hostname",
        false,
    )];
    // --add-host NAME:IP lines, as docker appends them.
    let extra: String = x
        .add_hosts
        .iter()
        .filter_map(|a| a.split_once(':'))
        .map(|(name, ip)| format!("{ip}\t{name}\n"))
        .collect();
    // Bridged (issue 17): its own hosts and resolv.conf; container:NAME: the other's.
    if crate::network::is_bridged(&cfg.network) {
        let (hosts, resolv) = crate::network::etc::write_files(store, cfg)?;
        for (source, target) in [(hosts, "/etc/hosts"), (resolv, "/etc/resolv.conf")] {
            binds.push(Volume::bind(source, target, false));
        }
        return Ok(binds);
    }
    if let Some(other) = cfg.network.strip_prefix("container:") {
        for f in ["hosts", "resolv.conf"] {
            let source = Paths::new(store, other).dir.join(f);
            if source.is_file() {
                binds.push(Volume::bind(source, &format!("/etc/{f}"), true));
            }
        }
        return Ok(binds);
    }
    if cfg.network == "none" {
        let text = format!(
            "127.0.0.1\tlocalhost {h}\n::1\tlocalhost ip6-localhost ip6-loopback {h}\n{extra}"
        );
        binds.push(Volume::bind(write("hosts", text)?, "/etc/hosts", false));
    } else {
        for f in ["/etc/resolv.conf", "/etc/hosts"] {
            // The file a symlink (systemd-resolved's) points to.
            let Ok(source) = std::fs::canonicalize(f) else {
                continue;
            };
            if !source.is_file() {
                continue;
            }
            let own = match f {
                "/etc/hosts" if !extra.is_empty() => {
                    let host = std::fs::read_to_string(&source).unwrap_or_default();
                    Some(("hosts", format!("{host}{extra}")))
                }
                "/etc/resolv.conf" if !x.dns.is_empty() => {
                    // The host's search and options lines, with --dns servers only.
                    let host = std::fs::read_to_string(&source).unwrap_or_default();
                    let mut text: String =
                        x.dns.iter().map(|d| format!("nameserver {d}\n")).collect();
                    for l in host
                        .lines()
                        .filter(|l| !l.trim_start().starts_with("nameserver"))
                    {
                        text.push_str(l);
                        text.push('\n');
                    }
                    Some(("resolv.conf", text))
                }
                _ => None,
            };
            binds.push(match own {
                Some((name, text)) => Volume::bind(write(name, text)?, f, false),
                None => Volume::bind(source, f, true),
            });
        }
    }
    Ok(binds)
}

/// In the container's init, first thing: be SIGKILLed when the supervisor dies (the whole
/// pid namespace goes with init), since nobody else would record the exit, unmount the root
/// or remove the cgroups. The supervisor may already be gone before the prctl: then the
/// error pipe, whose only reader it held, has no reader left (POLLERR).
fn die_with_supervisor(err_w: &OwnedFd) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        crate::process::fail(
            err_w,
            125,
            &format!("cannot tie the container to its supervisor: {e}"),
        );
    }
    let mut fds = [PollFd::new(err_w.as_fd(), PollFlags::POLLOUT)];
    let orphaned = poll(&mut fds, PollTimeout::ZERO).is_ok_and(|_| {
        fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR))
    });
    if orphaned {
        sys::exit_now(255);
    }
}

fn supervise_mounted(
    store: &Store,
    cfg: &ContainerConfig,
    io: Io,
    ready: &mut Option<OwnedFd>,
) -> Result<(i32, Option<String>)> {
    let paths = Paths::new(store, &cfg.id);
    let etc = etc_binds(store, &paths, cfg)?;
    let net = crate::network::Plan::prepare(store, cfg)?;
    let (net_child, mut net_parent) = (net.child, net.parent);
    // Rootless containers get no cgroup (their limits were refused at create).
    let cgroup = if crate::isolation::rootless::in_userns() {
        None
    } else {
        let cg = cgroups::create(&cfg.id, &cfg.limits)?;
        crate::isolation::devices::allow(&cg, &cfg.security)?;
        Some(cg)
    };
    // -t: init asks for the pty once the container's devpts is mounted (see init::Tty).
    let tty_pipes = if cfg.process.tty {
        let (ready_r, ready_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "cannot create a pipe")?;
        let (answer_r, answer_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "cannot create a pipe")?;
        Some((ready_r, ready_w, answer_r, answer_w))
    } else {
        None
    };
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "cannot create a pipe")?;
    let null = open_fd(Path::new("/dev/null"), OFlag::O_RDWR)?;
    // Foreground or detached, the supervisor logs what the container writes (docker's
    // json-file log) and, in the foreground, copies it to the user's stdout and stderr.
    let log: logfile::Shared = std::sync::Arc::new(std::sync::Mutex::new(File::from(open_fd(
        &paths.log(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND,
    )?)));
    let pipes = if cfg.process.tty {
        None
    } else {
        let out = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "cannot create a pipe")?;
        let err = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "cannot create a pipe")?;
        Some((out, err))
    };
    // Detached with -i and without -t: a pipe for stdin that `strata attach` writes to.
    let stdin_pipe = if io == Io::Log && cfg.process.interactive && !cfg.process.tty {
        Some(nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "cannot create a pipe")?)
    } else {
        None
    };
    // Rootless, the kernel refuses device nodes in the user namespace whatever the caps.
    let mknod = crate::isolation::rootless::in_userns()
        || cgroup.as_ref().is_some_and(cgroups::Cgroup::denies_devices);
    let security = crate::isolation::security::prepare(store, &cfg.security, mknod)?;
    let sigs = init::handled_signals();
    sigs.thread_block().ctx(|| "cannot block signals")?;
    // SAFETY: the supervisor is single-threaded until this fork: its pty and log threads
    // start after it, in the parent.
    #[allow(unsafe_code)]
    let forked = unsafe { sys::fork_new_pid_ns() };
    let pid = match forked.ctx(|| "cannot create a pid namespace")? {
        Forked::Child => {
            drop(err_r);
            drop(net_parent);
            // Only the supervisor reports readiness; a copy held here would delay the EOF.
            drop(ready.take());
            die_with_supervisor(&err_w);
            let stdin_null = io == Io::Log || !cfg.process.interactive;
            let mut ok = true;
            if let Some((r, _)) = &stdin_pipe {
                ok &= nix::unistd::dup2_stdin(r.as_fd()).is_ok();
            } else if stdin_null {
                ok &= nix::unistd::dup2_stdin(null.as_fd()).is_ok();
            }
            if let Some(((_, out_w), (_, err_w))) = &pipes {
                ok &= nix::unistd::dup2_stdout(out_w.as_fd()).is_ok();
                ok &= nix::unistd::dup2_stderr(err_w.as_fd()).is_ok();
            } else if io == Io::Log {
                // -t: the terminal is the command's stdio; init's own goes nowhere.
                ok &= nix::unistd::dup2_stdout(null.as_fd()).is_ok();
                ok &= nix::unistd::dup2_stderr(null.as_fd()).is_ok();
            }
            if !ok {
                crate::process::fail(&err_w, 125, "cannot set up the container's stdio");
            }
            let t = tty_pipes.map(|(ready_r, ready_w, answer_r, answer_w)| {
                drop((ready_r, answer_w));
                Tty {
                    ready: ready_w,
                    answer: answer_r,
                }
            });
            init::container_main(
                cfg,
                &paths.merged(),
                &etc,
                init::Prepared {
                    security,
                    cgroup: cgroup.clone(),
                },
                t,
                net_child,
                err_w,
            )
        }
        Forked::Parent(pid) => pid,
    };
    drop(err_w);
    drop(net_child);
    // Networking (issue 17): veths into init's new namespace while it mounts the root; a
    // failure is reported to init, which fails the start with it.
    if let Err(e) = net_parent.attach(pid) {
        tracing::debug!("network: {e}");
    }
    // Detached: output also goes to `strata attach` clients, their input to the container.
    let attach = match io {
        Io::Log => {
            let input = stdin_pipe.map(|(r, w)| {
                drop(r);
                File::from(w)
            });
            // Without it the container still runs; only attach is lost.
            super::attach_server::Server::listen(&paths.dir, pid, input)
                .map_err(|e| tracing::warn!("{e}"))
                .ok()
        }
        Io::Foreground => None,
    };
    let tee = |stdout: bool| -> Option<Box<dyn std::io::Write + Send>> {
        match (io, stdout) {
            (Io::Log, true) => attach.as_ref().map(|a| a.writer(super::attach_server::OUT)),
            (Io::Log, false) => attach.as_ref().map(|a| a.writer(super::attach_server::ERR)),
            (Io::Foreground, true) => Some(Box::new(std::io::stdout())),
            (Io::Foreground, false) => Some(Box::new(std::io::stderr())),
        }
    };
    let mut relays = Vec::new();
    if let Some(((out_r, out_w), (err_r, err_w))) = pipes {
        drop((out_w, err_w));
        let w_out = logfile::LogWriter::new(log.clone(), "stdout", tee(true));
        let w_err = logfile::LogWriter::new(log.clone(), "stderr", tee(false));
        relays.push(logfile::relay_pair(out_r, err_r, w_out, w_err));
    }
    // The supervisor keeps its slave fd until init has opened its own: a pty whose slave was
    // opened and closed again answers EIO to the master's reader, which would then stop and
    // lose the container's output.
    let pty = tty_pipes.and_then(|(ready_r, ready_w, answer_r, answer_w)| {
        drop((ready_w, answer_r));
        let mut b = [0u8; 1];
        // EOF: init failed before asking; it reports why on the error pipe.
        if !matches!(nix::unistd::read(&ready_r, &mut b), Ok(1)) {
            return None;
        }
        let ptmx = PathBuf::from(format!("/proc/{pid}/root/dev/pts/ptmx"));
        match pty::open_in(&ptmx) {
            Ok(p) => {
                let _ = nix::unistd::write(&answer_w, p.slave_path.to_string_lossy().as_bytes());
                Some((p.master, p.slave))
            }
            Err(e) => {
                // Closing the answer unanswered makes init fail with a message.
                tracing::warn!("{e}");
                None
            }
        }
    });
    let (master, slave) = pty.unzip();
    let start = container::pid_start_time(pid.as_raw());
    container::update_state(store, &cfg.id, |st| {
        st.status = Status::Running;
        st.pid = Some(pid.as_raw());
        st.pid_start = start;
        st.supervisor = Some(std::process::id() as i32);
        st.supervisor_start = container::pid_start_time(std::process::id() as i32);
        st.started_at = Some(now_secs());
        st.finished_at = None;
        st.exit_code = None;
        st.error = None;
    })?;
    let mut raw = None;
    let mut out_thread = None;
    if let Some(m) = &master {
        let reader = m.try_clone().ctx(|| "dup")?;
        let w = logfile::LogWriter::new(log.clone(), "stdout", tee(true));
        out_thread = Some(pty::copy_thread(reader, Box::new(w)));
        match io {
            Io::Foreground => {
                raw = Some(pty::RawMode::enter());
                if cfg.process.interactive {
                    let stdin = std::io::stdin()
                        .as_fd()
                        .try_clone_to_owned()
                        .ctx(|| "dup")?;
                    let writer = File::from(m.try_clone().ctx(|| "dup")?);
                    // Not joined: it may sit in read(stdin) until the process exits.
                    drop(pty::copy_thread(stdin, Box::new(writer)));
                }
            }
            Io::Log => {
                if let (Some(a), true) = (&attach, cfg.process.interactive) {
                    a.set_input(File::from(m.try_clone().ctx(|| "dup")?));
                }
            }
        }
    }
    let mut msg = String::new();
    // EOF on the error pipe: the command was executed (it holds the slave) or init failed.
    let _ = File::from(err_r).read_to_string(&mut msg);
    drop(slave);
    let msg = (!msg.is_empty()).then_some(msg);
    match &msg {
        Some(m) => {
            notify(ready, &format!("ERR {m}"));
            if io == Io::Foreground {
                drop(raw.take());
                // The command's own error, as `strata run`/`exec` print it (not a log line): it
                // comes from the container's init over the error pipe, so only this process has it.
                eprintln!("strata: {m}");
            }
        }
        None => notify(ready, "OK"),
    }
    let code = wait_forwarding(pid, master.as_ref(), &sigs);
    // The pid namespace is gone with its init: every writer of the pipes has exited.
    for t in out_thread.into_iter().chain(relays) {
        let _ = t.join();
    }
    drop(raw);
    if let Some(a) = attach {
        a.finish(code);
    }
    Ok((code, msg))
}

/// Wait for `pid`, forwarding signals to it (and window-size changes to `master`); its exit
/// status.
pub fn wait_forwarding(pid: Pid, master: Option<&OwnedFd>, sigs: &nix::sys::signal::SigSet) -> i32 {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(st) => {
                if let Some(code) = exit_code(st) {
                    return code;
                }
            }
            Err(_) => return 255,
        }
        match sigs.wait() {
            Ok(Signal::SIGCHLD) => {}
            Ok(Signal::SIGWINCH) => {
                if let Some(m) = master {
                    pty::forward_winsize(m.as_fd());
                }
            }
            Ok(
                Signal::SIGPIPE
                | Signal::SIGURG
                | Signal::SIGTTIN
                | Signal::SIGTTOU
                | Signal::SIGTSTP,
            ) => {}
            Ok(sig) => {
                let _ = kill(pid, sig);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}
