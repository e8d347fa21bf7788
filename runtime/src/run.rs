//! Creating containers and supervising them: mount the union, create cgroups, start the
//! container's init in new namespaces, relay the terminal and signals, record the exit, clean up.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use crate::container::{
    self, ContainerConfig, Limits, Paths, ProcessSpec, State, Status, Trace, Volume,
};
use crate::driver::{self, Driver};
use crate::init::{self, exit_code, Tty};
use crate::store::Store;
use crate::sys::{self, Forked};
use crate::util::{now_secs, random_id, write_json, Ctx, Result};
use crate::{cgroups, err, image, layer, pty};

/// Options of `strata run` (and `create`).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// --name.
    pub name: Option<String>,
    /// --rm.
    pub auto_remove: bool,
    /// -d.
    pub detach: bool,
    /// -i.
    pub interactive: bool,
    /// -t.
    pub tty: bool,
    /// -e K=V (or K to copy the host's value).
    pub env: Vec<String>,
    /// -w.
    pub workdir: Option<String>,
    /// -u.
    pub user: Option<String>,
    /// -h.
    pub hostname: Option<String>,
    /// -v SRC:DST[:ro].
    pub volumes: Vec<String>,
    /// --net host|none.
    pub network: String,
    /// --driver fuse|overlay|auto.
    pub driver: String,
    /// --memory 64m.
    pub memory: Option<String>,
    /// --pids-limit.
    pub pids_limit: Option<i64>,
    /// --cpus.
    pub cpus: Option<f64>,
    /// --trace FILE: trace the root's filesystem requests (fuse driver).
    pub trace: Option<PathBuf>,
    /// --trace-ops read,write,...
    pub trace_ops: Option<String>,
    /// --trace-path GLOB.
    pub trace_path: Option<String>,
    /// IMAGE.
    pub image: String,
    /// CMD...
    pub cmd: Vec<String>,
}

/// The --memory limit in bytes: a size as strata's mount options take it ("64m", "1G",
/// "1048576"; see [`strata_fs::options::parse_size`]), and not zero.
fn parse_memory(s: &str) -> Result<u64> {
    match strata_fs::options::parse_size(s) {
        None => Err(err!("invalid size {s:?}: use a number with k, m or g")),
        Some(0) => Err(err!("invalid size {s:?}: must be positive")),
        Some(n) => Ok(n),
    }
}

fn parse_volume(s: &str) -> Result<Volume> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, "rw"),
        [s, d, m] => (*s, *d, *m),
        _ => {
            return Err(err!(
                "invalid volume {s:?}: use -v /host/path:/container/path[:ro]"
            ))
        }
    };
    let readonly = match mode {
        "ro" => true,
        "rw" => false,
        _ => return Err(err!("invalid volume mode {mode:?} in {s:?}: use ro or rw")),
    };
    if !dst.starts_with('/') {
        return Err(err!(
            "invalid volume {s:?}: the container path must be absolute"
        ));
    }
    let source = std::fs::canonicalize(src)
        .ctx(|| format!("volume source {src} (it must exist on the host)"))?;
    Ok(Volume {
        source,
        target: dst.to_string(),
        readonly,
    })
}

/// The container's trace settings from `--trace`, `--trace-ops` and `--trace-path`.
fn trace_spec(o: &RunOptions) -> Result<Option<Trace>> {
    let Some(file) = &o.trace else {
        if o.trace_ops.is_some() || o.trace_path.is_some() {
            return Err(err!("--trace-ops and --trace-path need --trace FILE"));
        }
        return Ok(None);
    };
    let file = if file.is_absolute() {
        file.clone()
    } else {
        std::env::current_dir()
            .ctx(|| "cannot find the current directory for --trace")?
            .join(file)
    };
    let name = file.to_string_lossy();
    if name.contains(',') {
        return Err(err!(
            "the trace file {name} contains ',' (it separates mount options): pick another path"
        ));
    }
    match file.parent() {
        Some(d) if d.is_dir() => {}
        _ => {
            return Err(err!(
                "cannot write the trace to {name}: its directory does not exist"
            ))
        }
    }
    let ops = o
        .trace_ops
        .as_deref()
        .unwrap_or_default()
        .split([',', ':'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join(":");
    let path = o.trace_path.clone().unwrap_or_default();
    if path.contains(',') {
        return Err(err!(
            "--trace-path {path:?} contains ',' (it separates mount options): match without it"
        ));
    }
    Ok(Some(Trace { file, ops, path }))
}

/// Create a container (config, state and directories) from an image, without starting it.
pub fn create(store: &Store, o: &RunOptions) -> Result<ContainerConfig> {
    let network = match o.network.as_str() {
        "" | "host" => "host",
        "none" => "none",
        other => return Err(err!("unsupported --net {other:?}: use host or none")),
    };
    let limits = Limits {
        memory: o.memory.as_deref().map(parse_memory).transpose()?,
        pids: o.pids_limit,
        cpus: o.cpus,
    };
    if limits.cpus.is_some_and(|c| c <= 0.0) {
        return Err(err!("--cpus must be positive"));
    }
    if limits.pids.is_some_and(|p| p <= 0) {
        return Err(err!("--pids-limit must be positive"));
    }
    if crate::rootless::in_userns() || crate::rootless::needed() {
        let asked: Vec<&str> = [
            ("--memory", limits.memory.is_some()),
            ("--pids-limit", limits.pids.is_some()),
            ("--cpus", limits.cpus.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(n, _)| *n)
        .collect();
        if !asked.is_empty() {
            return Err(err!(
                "{} cannot be applied rootless: the cgroup hierarchies are not delegated to unprivileged users here; run as root or drop the limit",
                asked.join(", ")
            ));
        }
    }
    let trace = trace_spec(o)?;
    let volumes = o
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<Result<Vec<_>>>()?;
    let _lock = store.lock_exclusive()?;
    let image_id = image::resolve(store, &o.image)?;
    let img = image::load_image(store, &image_id)?;
    let layers = img.layer_hexes();
    layer::check_present(store, &layers)?;
    let native = crate::native::any_native(store, &layers);
    let (driver, driver_reason) = match &trace {
        Some(_) => driver::choose_traced(store, &o.driver, native)?,
        None => driver::choose(store, &o.driver, native)?,
    };
    if driver == Driver::Overlay && native {
        // Once per native layer, cached for every later container (docs/commit.md).
        crate::plain::materialize_all(store, &layers)?;
    }

    let id = random_id()?;
    let existing = container::list_readable(store)?;
    let name = match &o.name {
        Some(n) => {
            let ok = !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(err!(
                    "invalid container name {n:?}: use letters, digits and _ . -"
                ));
            }
            if existing.iter().any(|c| &c.name == n) {
                return Err(err!("the container name {n:?} is already in use: remove it (strata rm) or pick another --name"));
            }
            n.clone()
        }
        None => container::generate_name(&id),
    };
    let mut args: Vec<String> = img.config.entrypoint.clone().unwrap_or_default();
    if o.cmd.is_empty() {
        args.extend(img.config.cmd.clone().unwrap_or_default());
    } else {
        args.extend(o.cmd.iter().cloned());
    }
    if args.is_empty() {
        return Err(err!(
            "no command given and the image {} has no CMD: add one after the image name",
            o.image
        ));
    }
    let mut env = img.config.env.clone().unwrap_or_default();
    for e in &o.env {
        let kv = match e.split_once('=') {
            Some(_) => e.clone(),
            None => match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue,
            },
        };
        let key = kv.split('=').next().unwrap_or_default().to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    let cwd = o
        .workdir
        .clone()
        .or_else(|| img.config.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(err!("the working directory {cwd:?} must be absolute"));
    }
    let cfg = ContainerConfig {
        id: id.clone(),
        name,
        image: o.image.clone(),
        image_id,
        layers,
        created: now_secs(),
        driver: driver.name().into(),
        driver_reason,
        process: ProcessSpec {
            args,
            env,
            cwd,
            user: o
                .user
                .clone()
                .or_else(|| img.config.user.clone())
                .unwrap_or_default(),
            tty: o.tty,
            interactive: o.interactive,
        },
        hostname: o.hostname.clone().unwrap_or_else(|| id[..12].to_string()),
        network: network.into(),
        volumes,
        limits,
        auto_remove: o.auto_remove,
        trace,
    };
    let p = Paths::new(store, &id);
    for d in [p.dir.clone(), p.upper(), p.work(), p.merged()] {
        std::fs::create_dir_all(&d).ctx(|| format!("cannot create {}", d.display()))?;
    }
    write_json(&p.state(), &State::created())?;
    // config.json last: a directory without it is not a container (ignored, removable).
    write_json(&p.config(), &cfg)?;
    Ok(cfg)
}

/// How a supervised container's stdio is wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// The user's terminal or pipes (foreground run).
    Foreground,
    /// The container log (detached).
    Log,
}

fn notify(ready: &mut Option<OwnedFd>, msg: &str) {
    if let Some(fd) = ready.take() {
        let _ = nix::unistd::write(fd.as_fd(), msg.as_bytes());
    }
}

fn open_fd(path: &Path, flags: OFlag) -> Result<OwnedFd> {
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
    r1.and(r2)
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
        container::save_state(store, &cfg.id, &st)?;
    }
    let paths = Paths::new(store, &cfg.id);
    let mounted = (|| {
        layer::check_present(store, &cfg.layers)?;
        if cfg.driver == Driver::Overlay.name() && crate::native::any_native(store, &cfg.layers) {
            // Made at create; again here if it was removed meanwhile.
            let _lock = store.lock_exclusive()?;
            crate::plain::materialize_all(store, &cfg.layers)?;
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
    let result = supervise_mounted(store, cfg, io, ready);
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
    if cfg.auto_remove {
        remove_files(store, &cfg.id)?;
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
pub fn etc_binds(paths: &Paths, cfg: &ContainerConfig) -> Result<Vec<Volume>> {
    let write = |name: &str, text: String| -> Result<PathBuf> {
        let p = paths.dir.join(name);
        std::fs::write(&p, text).ctx(|| format!("cannot write {}", p.display()))?;
        Ok(p)
    };
    let h = &cfg.hostname;
    let mut binds = vec![Volume {
        source: write("hostname", format!("{h}\n"))?,
        target: "/etc/hostname".into(),
        readonly: false,
    }];
    if cfg.network == "none" {
        binds.push(Volume {
            source: write(
                "hosts",
                format!(
                    "127.0.0.1\tlocalhost {h}\n::1\tlocalhost ip6-localhost ip6-loopback {h}\n"
                ),
            )?,
            target: "/etc/hosts".into(),
            readonly: false,
        });
    } else {
        for f in ["/etc/resolv.conf", "/etc/hosts"] {
            // The file a symlink (systemd-resolved's) points to.
            if let Ok(source) = std::fs::canonicalize(f) {
                if source.is_file() {
                    binds.push(Volume {
                        source,
                        target: f.into(),
                        readonly: true,
                    });
                }
            }
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
    let etc = etc_binds(&paths, cfg)?;
    // Rootless containers get no cgroup (their limits were refused at create).
    let cgroup = if crate::rootless::in_userns() {
        None
    } else {
        Some(cgroups::create(&cfg.id, &cfg.limits)?)
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
    let log = match io {
        Io::Log => Some(open_fd(
            &paths.log(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND,
        )?),
        Io::Foreground => None,
    };
    let sigs = init::handled_signals();
    sigs.thread_block().ctx(|| "cannot block signals")?;
    let pid = match sys::fork_new_pid_ns().ctx(|| "cannot create a pid namespace")? {
        Forked::Child => {
            drop(err_r);
            // Only the supervisor reports readiness; a copy held here would delay the EOF.
            drop(ready.take());
            die_with_supervisor(&err_w);
            let stdin_null = io == Io::Log || !cfg.process.interactive;
            let mut ok = true;
            if stdin_null {
                ok &= nix::unistd::dup2_stdin(null.as_fd()).is_ok();
            }
            if let Some(l) = &log {
                ok &= nix::unistd::dup2_stdout(l.as_fd()).is_ok();
                ok &= nix::unistd::dup2_stderr(l.as_fd()).is_ok();
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
            init::container_main(cfg, &paths.merged(), &etc, cgroup.as_ref(), t, err_w)
        }
        Forked::Parent(pid) => pid,
    };
    drop(err_w);
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
        st.stopping = false;
        st.error = None;
    })?;
    let mut raw = None;
    let mut out_thread = None;
    if let Some(m) = &master {
        let reader = m.try_clone().ctx(|| "dup")?;
        match io {
            Io::Foreground => {
                raw = Some(pty::RawMode::enter());
                out_thread = Some(pty::copy_thread(reader, Box::new(std::io::stdout())));
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
                if let Some(l) = &log {
                    let f = File::from(l.try_clone().ctx(|| "dup")?);
                    out_thread = Some(pty::copy_thread(reader, Box::new(f)));
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
                eprintln!("strata: {m}");
            }
        }
        None => notify(ready, "OK"),
    }
    let code = wait_forwarding(pid, master.as_ref(), &sigs);
    if let Some(t) = out_thread {
        let _ = t.join();
    }
    drop(raw);
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

/// Start the supervisor as a daemon; returns once the container's command has started.
pub fn detach(store: &Store, cfg: &ContainerConfig) -> Result<()> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "cannot create a pipe")?;
    match sys::fork().ctx(|| "cannot fork")? {
        Forked::Child => {
            drop(r);
            let _ = nix::unistd::setsid();
            if let Ok(null) = open_fd(Path::new("/dev/null"), OFlag::O_RDWR) {
                let _ = nix::unistd::dup2_stdin(null.as_fd());
                let _ = nix::unistd::dup2_stdout(null.as_fd());
                let _ = nix::unistd::dup2_stderr(null.as_fd());
            }
            let mut ready = Some(w);
            if let Err(e) = supervise(store, cfg, Io::Log, &mut ready) {
                notify(&mut ready, &format!("ERR {e}"));
            }
            sys::exit_now(0)
        }
        Forked::Parent(_) => {
            drop(w);
            let mut msg = String::new();
            let _ = File::from(r).read_to_string(&mut msg);
            match msg.strip_prefix("ERR ") {
                _ if msg == "OK" => Ok(()),
                Some(m) => Err(err!("{m}")),
                None => Err(err!(
                    "the container's supervisor died before the container started"
                )),
            }
        }
    }
}

/// `strata run`: create and start; the exit status when in the foreground.
pub fn run(store: &Store, o: &RunOptions) -> Result<(String, Option<i32>)> {
    let cfg = create(store, o)?;
    if o.detach {
        detach(store, &cfg)?;
        Ok((cfg.id, None))
    } else {
        let code = supervise(store, &cfg, Io::Foreground, &mut None)?;
        Ok((cfg.id, Some(code)))
    }
}

/// True when the state names a supervisor that is gone: it was killed (or crashed) while
/// starting or running the container, and nobody recorded the end or cleaned up.
fn orphaned(st: &State) -> bool {
    match st.supervisor {
        Some(_) => !container::supervisor_alive(st),
        // A state written by an older strata: running as long as its init lives.
        None => st.status == Status::Running && !container::init_alive(st),
    }
}

/// Put right the state of a container whose supervisor died (SIGKILL, OOM, a crash) while
/// starting or running it: end its processes if any are left (init dies with the
/// supervisor, but an older strata, or a supervisor killed before init tied itself to it,
/// leaves them running with nobody to record their exit), unmount its root, remove its
/// cgroups, and mark a running one exited.
pub fn reconcile(store: &Store, id: &str) -> Result<State> {
    let st = container::load_state(store, id)?;
    if !orphaned(&st) {
        return Ok(st);
    }
    // Again under the lock: a new supervisor may have taken the container over meanwhile,
    // and must not find its fresh mount undone (it records itself under this lock).
    let _lock = store.lock_exclusive()?;
    let mut st = container::load_state(store, id)?;
    if !orphaned(&st) {
        return Ok(st);
    }
    if container::init_alive(&st) {
        if let Some(pid) = st.pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Whoever inherited init reaps it; the cgroup removal below kills any stragglers.
        wait_until(Instant::now() + Duration::from_secs(5), || {
            !container::init_alive(&st)
        });
    }
    cleanup(store, id)?;
    if st.status == Status::Running {
        st.status = Status::Exited;
        st.exit_code = st.exit_code.or(Some(if st.stopping { 137 } else { 255 }));
        st.finished_at = Some(now_secs());
        if !st.stopping {
            st.error = Some("the supervisor died; exit status unknown".into());
        }
    } else {
        st.error = Some("the supervisor died while starting the container".into());
    }
    st.pid = None;
    st.pid_start = None;
    st.supervisor = None;
    st.supervisor_start = None;
    container::save_state(store, id, &st)?;
    Ok(st)
}

fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// Wait until the supervisor has recorded the exit (or died), then reconcile.
fn wait_exited(store: &Store, id: &str) -> Result<State> {
    wait_until(Instant::now() + Duration::from_secs(15), || {
        container::load_state(store, id)
            .is_ok_and(|st| st.status != Status::Running || !container::supervisor_alive(&st))
    });
    reconcile(store, id)
}

/// Parse a signal name (KILL, SIGKILL) or number.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| err!("unknown signal {s}"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map_err(|_| err!("unknown signal {s}: use a name like TERM or a number"))
}

/// Send `sig` to the container's init (which forwards it to the command).
pub fn kill_container(store: &Store, id: &str, sig: Signal) -> Result<()> {
    let st = reconcile(store, id)?;
    if st.status != Status::Running || !container::init_alive(&st) {
        return Err(err!("container {id} is not running"));
    }
    if sig == Signal::SIGKILL || sig == Signal::SIGTERM {
        container::update_state(store, id, |st| st.stopping = true)?;
    }
    let pid = st.pid.ok_or_else(|| err!("container {id} has no pid"))?;
    kill(Pid::from_raw(pid), sig).ctx(|| format!("cannot signal container {id}"))
}

/// Stop: SIGTERM (or the image's stop signal), SIGKILL after `timeout`, wait for the exit.
pub fn stop(store: &Store, id: &str, timeout: Duration) -> Result<()> {
    let st = reconcile(store, id)?;
    if st.status != Status::Running || !container::init_alive(&st) {
        return Ok(());
    }
    kill_container(store, id, Signal::SIGTERM)?;
    let gone = wait_until(Instant::now() + timeout, || !container::init_alive(&st));
    if !gone {
        if let Some(pid) = st.pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    wait_exited(store, id)?;
    Ok(())
}

/// Start a created or exited container: detached, or attached in the foreground.
pub fn start(store: &Store, id: &str, attach: bool) -> Result<Option<i32>> {
    let st = reconcile(store, id)?;
    if st.status == Status::Running {
        return Err(err!("container {id} is already running"));
    }
    let cfg = container::load_config(store, id)?;
    if attach {
        Ok(Some(supervise(store, &cfg, Io::Foreground, &mut None)?))
    } else {
        detach(store, &cfg)?;
        Ok(None)
    }
}

fn remove_files(store: &Store, id: &str) -> Result<()> {
    let _lock = store.lock_exclusive()?;
    let p = Paths::new(store, id);
    // config.json first: a half-removed directory is then no longer listed as a container.
    let _ = std::fs::remove_file(p.config());
    crate::store::remove_tree(&p.dir)?;
    crate::images::gc_layers(store)?;
    Ok(())
}

/// Remove a container (killing it first with `force`).
pub fn remove(store: &Store, id: &str, force: bool) -> Result<()> {
    let st = reconcile(store, id)?;
    if st.status == Status::Running {
        if !force {
            return Err(err!(
                "container {id} is running: stop it first or use rm -f"
            ));
        }
        if let Some(pid) = st.pid {
            container::update_state(store, id, |st| st.stopping = true)?;
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        wait_exited(store, id)?;
    }
    cleanup(store, id)?;
    remove_files(store, id)
}

/// The log of a detached container.
pub fn log_path(store: &Store, id: &str) -> PathBuf {
    Paths::new(store, id).log()
}

/// Open the log for appending checks (used by `logs -f`).
pub fn open_log(store: &Store, id: &str) -> Result<Option<File>> {
    match OpenOptions::new().read(true).open(log_path(store, id)) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err!("cannot open the log: {e}")),
    }
}
