//! `strata exec`: run another process in a running container by joining its namespaces
//! and cgroups (setns), with the same capabilities, seccomp filter and no_new_privs as the
//! container's command.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sched::{setns, CloneFlags};

use crate::container::{self, ProcessSpec, Status};
use crate::err;
use crate::isolation::{caps, cgroups, security};
use crate::process::init;
use crate::process::pty;
use crate::process::{self, fail, Target};
use crate::store::Store;
use crate::util::{Ctx, Result};
use strata_sys::{self as sys, Forked};

/// Options of `strata exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// -i.
    pub interactive: bool,
    /// -t.
    pub tty: bool,
    /// -e.
    pub env: Vec<String>,
    /// -u.
    pub user: Option<String>,
    /// -w.
    pub workdir: Option<String>,
    /// The command.
    pub cmd: Vec<String>,
    /// -d: start the command in the background and return at once.
    pub detach: bool,
}

/// The process whose namespaces to join: init, or, when init is out of reach (rootless,
/// init is non-dumpable and was exec'd outside the user namespace), its first child, the
/// container's command, exec'd inside it.
fn target_pid(init: i32) -> i32 {
    if File::open(format!("/proc/{init}/ns/pid")).is_ok() {
        return init;
    }
    std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .ok()
        .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(init)
}

/// Run `o.cmd` in container `id`; its exit status.
pub fn exec(store: &Store, id: &str, o: &ExecOptions) -> Result<i32> {
    let cfg = container::load_config(store, id)?;
    let st = container::reconcile(store, id)?;
    let init_pid = match (st.status, st.pid) {
        (Status::Running, Some(pid)) if container::init_alive(&st) => pid,
        _ => {
            return Err(err!(
                "container {} is not running: start it first",
                cfg.name
            ))
        }
    };
    let pid = target_pid(init_pid);
    if o.cmd.is_empty() {
        return Err(err!("no command given to exec"));
    }
    if o.detach {
        return exec_detached(store, id, o);
    }
    let mut env = cfg.process.env.clone();
    for e in &o.env {
        if let Some((k, _)) = e.split_once('=') {
            env.retain(|x| x.split('=').next() != Some(k));
            env.push(e.clone());
        }
    }
    let spec = ProcessSpec {
        args: o.cmd.clone(),
        env,
        cwd: o.workdir.clone().unwrap_or_else(|| cfg.process.cwd.clone()),
        user: o.user.clone().unwrap_or_else(|| cfg.process.user.clone()),
        tty: o.tty,
        interactive: o.interactive,
    };
    let ns = |name: &str| {
        File::open(format!("/proc/{pid}/ns/{name}"))
            .ctx(|| format!("cannot open the container's {name} namespace"))
    };
    // Namespaces the container shares with us (the host network) are not joined: a rootless
    // exec may not enter namespaces owned by the initial user namespace, even its own.
    let same = |name: &str| {
        use std::os::unix::fs::MetadataExt;
        let id = |p: String| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
        let theirs = id(format!("/proc/{pid}/ns/{name}"));
        theirs.is_some() && theirs == id(format!("/proc/self/ns/{name}"))
    };
    let mut nsfds = Vec::new();
    for (name, flag) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        if !same(name) {
            nsfds.push((ns(name)?, flag));
        }
    }
    let pidns = ns("pid")?;
    // A rootless container lives in a user namespace: join it first for the rights the
    // other joins need.
    let userns = if crate::isolation::rootless::other_userns(pid) {
        Some(ns("user")?)
    } else {
        None
    };
    let cgroup = cgroups::existing(&cfg.id);
    // The pty comes from the container's own devpts, so the process sees /dev/pts/N.
    let tty = if o.tty {
        Some(pty::open_in(Path::new(&format!(
            "/proc/{pid}/root/dev/pts/ptmx"
        )))?)
    } else {
        None
    };
    // As the container's command has it (init::container_main); decided here, as the child
    // cannot read its own /proc/self once in the container's mount namespace.
    let mknod =
        userns.is_some() || crate::isolation::rootless::in_userns() || cgroup.denies_devices();
    // The seccomp program from the store's cache (compiled once per profile), before the fork.
    let prepared = security::prepare(store, &cfg.security, mknod)?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "cannot create a pipe")?;
    let sigs = init::handled_signals();
    sigs.thread_block().ctx(|| "cannot block signals")?;
    // The parent stays outside the container (so it may start the pty threads); the child
    // joins the namespaces and forks the process into the pid namespace.
    // SAFETY: single-threaded: the pty threads start after this fork, in the parent.
    #[allow(unsafe_code)]
    let forked = unsafe { sys::fork() };
    let child = match forked.ctx(|| "cannot fork")? {
        Forked::Child => {
            drop(err_r);
            if let Some(u) = &userns {
                if let Err(e) = setns(u.as_fd(), CloneFlags::CLONE_NEWUSER) {
                    fail(
                        &err_w,
                        125,
                        &format!("cannot join the container's user namespace: {e}"),
                    );
                }
            }
            if let Err(e) = cgroup.join_self() {
                fail(&err_w, 125, &e.to_string());
            }
            if let Err(e) = setns(pidns.as_fd(), CloneFlags::CLONE_NEWPID) {
                fail(
                    &err_w,
                    125,
                    &format!("cannot join the container's pid namespace: {e}"),
                );
            }
            for (fd, flag) in &nsfds {
                if let Err(e) = setns(fd.as_fd(), *flag) {
                    fail(
                        &err_w,
                        125,
                        &format!("cannot join the container's namespaces: {e}"),
                    );
                }
            }
            if !o.interactive && !o.tty {
                if let Ok(null) =
                    nix::fcntl::open("/dev/null", OFlag::O_RDONLY, nix::sys::stat::Mode::empty())
                {
                    let _ = nix::unistd::dup2_stdin(null.as_fd());
                }
            }
            let (u, env) = match init::prepare_process(&spec, None) {
                Ok(x) => x,
                Err(e) => fail(&err_w, 125, &e.to_string()),
            };
            // Until it execs, the process runs strata (with the environment of whoever ran
            // `strata exec`), and the reaper stays so: see init::container_main.
            if let Err(e) = nix::sys::prctl::set_dumpable(false) {
                fail(
                    &err_w,
                    125,
                    &format!("cannot make the process non-dumpable: {e}"),
                );
            }
            // The same capabilities, seccomp filter and no_new_privs as the container's command.
            let applied = match security::apply_prepared(&cfg.security, prepared) {
                Ok(a) => a,
                Err(e) => fail(&err_w, 125, &e.to_string()),
            };
            let target = Target {
                args: &spec.args,
                env: &env,
                cwd: &spec.cwd,
                user: &u,
                caps: &applied.caps,
            };
            let slave = tty.map(|p| {
                drop(p.master);
                // The terminal belongs to the user it runs as (as docker does).
                let _ = nix::unistd::fchown(
                    p.slave.as_fd(),
                    Some(nix::unistd::Uid::from_raw(u.uid)),
                    None,
                );
                p.slave
            });
            // SAFETY: in the child of the fork above, which has only this thread.
            #[allow(unsafe_code)]
            let forked = unsafe { sys::fork() };
            match forked {
                Ok(Forked::Child) => process::exec(&target, slave, &err_w),
                Ok(Forked::Parent(grandchild)) => {
                    if caps::finish(&applied.caps).is_err() {
                        let _ = nix::sys::signal::kill(grandchild, nix::sys::signal::SIGKILL);
                        fail(&err_w, 125, "cannot drop the exec process's capabilities");
                    }
                    drop(err_w);
                    drop(slave);
                    sys::exit_now(init::reap_until(grandchild))
                }
                Err(e) => fail(&err_w, 125, &format!("cannot fork: {e}")),
            }
        }
        Forked::Parent(pid) => pid,
    };
    drop(err_w);
    let master = tty.map(|p| {
        drop(p.slave);
        p.master
    });
    let mut raw = None;
    let mut out_thread = None;
    if let Some(m) = &master {
        raw = Some(pty::RawMode::enter());
        out_thread = Some(pty::copy_thread(
            m.try_clone().ctx(|| "dup")?,
            Box::new(std::io::stdout()),
        ));
        if o.interactive {
            let stdin = std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .ctx(|| "dup")?;
            drop(pty::copy_thread(
                stdin,
                Box::new(File::from(m.try_clone().ctx(|| "dup")?)),
            ));
        }
    }
    let mut msg = String::new();
    let _ = File::from(err_r).read_to_string(&mut msg);
    if !msg.is_empty() {
        drop(raw.take());
        // The command's own error, as `strata run`/`exec` print it (not a log line): it
        // comes from the container's init over the error pipe, so only this process has it.
        eprintln!("strata: {msg}");
    }
    let code = container::wait_forwarding(child, master.as_ref(), &sigs);
    if let Some(t) = out_thread {
        let _ = t.join();
    }
    drop(raw);
    Ok(code)
}

/// `exec -d`: run the command from a daemon of its own (stdio on /dev/null), as docker
/// does; 0 once it is forked.
fn exec_detached(store: &Store, id: &str, o: &ExecOptions) -> Result<i32> {
    if o.tty || o.interactive {
        return Err(err!(
            "exec -d takes no -i or -t: nobody would read or write the terminal"
        ));
    }
    // SAFETY: the CLI is single-threaded here: no pty or progress thread has started.
    #[allow(unsafe_code)]
    let forked = unsafe { sys::fork() };
    match forked.ctx(|| "cannot fork")? {
        Forked::Child => {
            let _ = nix::unistd::setsid();
            if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
                let _ = nix::unistd::dup2_stdin(null.as_fd());
                let _ = nix::unistd::dup2_stdout(null.as_fd());
                let _ = nix::unistd::dup2_stderr(null.as_fd());
            }
            let o = ExecOptions {
                detach: false,
                ..o.clone()
            };
            sys::exit_now(exec(store, id, &o).unwrap_or(125))
        }
        Forked::Parent(_) => Ok(0),
    }
}
