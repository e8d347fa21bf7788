//! Assembling a union from mount options and serving it over FUSE.

use crate::config::options::MountOptions;
use crate::fuse::adapter::FuseAdapter;
use crate::union::branch::Branch;
use crate::union::fs::{Union, Work};
use crate::union::meta::MetaStore;
use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, Signal};
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A mount that could not be set up or served; each variant carries the one-line message
/// naming the problem (and what to do).
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A branch (lowerdir, upperdir, workdir) cannot be opened or used as given.
    #[error("{0}")]
    Branch(String),
    /// The kernel mount or the FUSE handshake failed.
    #[error("{0}")]
    Mount(String),
    /// The daemon could not start serving (tracing, signals) or its session failed.
    #[error("{0}")]
    Session(String),
}

/// Whether trusted.* xattrs can be written in `dir` (root with CAP_SYS_ADMIN).
fn trusted_xattrs_work(dir: &Branch) -> bool {
    let Ok(p) = strata_sys::proc_path(dir.root(), OsStr::new(".")) else {
        return false;
    };
    let name = OsStr::new("trusted.strata.probe");
    let ok = strata_sys::lsetxattr(&p, name, b"1", 0).is_ok();
    let _ = strata_sys::lremovexattr(&p, name);
    ok
}

/// Open a directory under the workdir, creating it if needed.
fn work_subdir(work: &Branch, name: &str) -> Result<std::os::fd::OwnedFd, MountError> {
    let p = Path::new(name);
    match nix::sys::stat::mkdirat(
        work.root(),
        p,
        nix::sys::stat::Mode::from_bits_truncate(0o700),
    ) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => {
            return Err(MountError::Branch(format!(
                "workdir {}: cannot create {name}/: {} (is the workdir writable?)",
                work.path.display(),
                e.desc()
            )))
        }
    }
    work.open_at(p, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)
        .map_err(|e| {
            MountError::Branch(format!(
                "workdir {}: {name}/ is not a usable directory: {e}",
                work.path.display()
            ))
        })
}

/// Lift the soft fd limit to the hard one: every file the mount's users hold open is an fd
/// in the daemon too, and 1024 (a common soft limit) is soon reached by a container.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("cannot raise the fd limit from {soft} to {hard}: {e}");
            }
        }
    }
}

/// Open and check the branches and build the union; nothing is mounted yet.
pub fn prepare(opts: MountOptions) -> Result<Union, MountError> {
    raise_fd_limit();
    let mut lowers = Vec::new();
    for (i, l) in opts.lowerdirs.iter().enumerate() {
        let mut b = Branch::open(l, &format!("lowerdir {}", i)).map_err(MountError::Branch)?;
        b.fill = crate::union::lazy_fill::fill_for(l);
        lowers.push(b);
    }
    let upper = match &opts.upperdir {
        Some(u) => Some(Branch::open(u, "upperdir").map_err(MountError::Branch)?),
        None => None,
    };
    let mut work = None;
    if let (Some(u), Some(w)) = (&upper, &opts.workdir) {
        let wb = Branch::open(w, "workdir").map_err(MountError::Branch)?;
        if wb.dev != u.dev {
            return Err(MountError::Branch(format!(
                "workdir {} and upperdir {} are on different filesystems; put them on the same one",
                w.display(),
                u.path.display()
            )));
        }
        if nix::unistd::access(u.path.as_path(), nix::unistd::AccessFlags::W_OK).is_err() {
            return Err(MountError::Branch(format!(
                "upperdir {} is not writable",
                u.path.display()
            )));
        }
        let dir = work_subdir(&wb, "work")?;
        let index = work_subdir(&wb, "index")?;
        clean_staging(&dir);
        work = Some(Work { dir, index });
    }
    // One small number per filesystem, upper's first, so inode numbers from different
    // filesystems cannot collide while those of a single filesystem stay unchanged.
    let mut devs: Vec<u64> = Vec::new();
    let mut index_of = |dev: u64| -> u64 {
        match devs.iter().position(|d| *d == dev) {
            Some(i) => i as u64,
            None => {
                devs.push(dev);
                (devs.len() - 1) as u64
            }
        }
    };
    let mut upper = upper;
    if let Some(u) = upper.as_mut() {
        u.fs_index = index_of(u.dev);
    }
    for l in lowers.iter_mut() {
        l.fs_index = index_of(l.dev);
    }
    let trusted = match &upper {
        Some(u) => trusted_xattrs_work(u),
        None => nix::unistd::geteuid().is_root(),
    };
    Ok(Union::new(
        upper,
        lowers,
        work,
        opts,
        MetaStore::new(trusted),
    ))
}

/// Remove leftovers of copy-ups interrupted by a crash; they were never visible.
fn clean_staging(dir: &std::os::fd::OwnedFd) {
    if let Err(e) = crate::union::branch::clear_dir(dir.as_fd()) {
        tracing::warn!("could not clean the workdir staging area: {e}");
    }
}

/// How long a stopping daemon waits for its connection to end before it leaves anyway
/// (the process exit then closes /dev/fuse, which ends the connection everywhere).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Why the serving loop ended.
enum End {
    /// The kernel ended the connection (unmount of the last copy, abort), or an error.
    Session(std::io::Result<()>),
    /// A stop signal was handled; `ending` tells whether the connection is known to end.
    Signal { ending: bool },
}

/// Mount `union` at `mountpoint` and serve it until unmounted. `on_mounted` runs once the
/// mount is live (the daemonizing parent is told then).
pub fn serve(union: Union, mountpoint: &Path, on_mounted: impl FnOnce()) -> Result<(), MountError> {
    // Block the stop signals before any thread starts (the tracer, the compaction worker,
    // the request threads all inherit the mask) and let one thread wait for them, so that
    // SIGTERM unmounts cleanly: a thread started earlier with them unblocked would take
    // SIGTERM's default action and kill the daemon, leaving a dead mount behind.
    let stop = stop_signals()?;
    let union = Arc::new(union);
    let stats = Arc::new(crate::observe::stats::Stats::default());
    let tracer = crate::observe::trace::Tracer::start(&union.options().trace)
        .map_err(|e| MountError::Session(format!("cannot start tracing: {e}")))?
        .map(Arc::new);
    crate::fuse::request_guard::log_panics();
    let r = serve_traced(union, stats, tracer.clone(), mountpoint, stop, on_mounted);
    // Every exit path, error or not, flushes the trace.
    if let Some(t) = &tracer {
        t.finish();
    }
    r
}

/// Block SIGTERM, SIGINT and SIGHUP in the calling thread (and so in every thread it starts).
fn stop_signals() -> Result<SigSet, MountError> {
    let mut stop = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stop.add(sig);
    }
    stop.thread_block()
        .map_err(|e| MountError::Session(format!("cannot block signals: {e}")))?;
    Ok(stop)
}

fn serve_traced(
    union: Arc<Union>,
    stats: Arc<crate::observe::stats::Stats>,
    tracer: Option<Arc<crate::observe::trace::Tracer>>,
    mountpoint: &Path,
    stop: SigSet,
    on_mounted: impl FnOnce(),
) -> Result<(), MountError> {
    let adapter = FuseAdapter::new(union.clone()).observed(stats.clone(), tracer.clone());
    let notifier = adapter.notifier_slot();
    let mut config = fuser::Config::default();
    let opts = union.options();
    let mut acl = match nix::unistd::geteuid().is_root() {
        true => fuser::SessionACL::All,
        false => fuser::SessionACL::Owner,
    };
    for k in &opts.kernel {
        match k.as_str() {
            "allow_other" => acl = fuser::SessionACL::All,
            "allow_root" => acl = fuser::SessionACL::RootAndOwner,
            _ => {}
        }
    }
    config.acl = acl;
    config.n_threads = Some(match opts.threads {
        0 => std::thread::available_parallelism().map_or(4, |n| (n.get() * 2).max(4)),
        n => n,
    });
    config.clone_fd = true;
    let (mnt, fd) = crate::fuse::mount::mount(mountpoint, opts, union.writable()).map_err(|e| {
        MountError::Mount(format!(
            "cannot mount at {}: {e} (does the directory exist, and is /dev/fuse usable?)",
            mountpoint.display()
        ))
    })?;
    let mnt = Arc::new(mnt);
    let session = match fuser::Session::from_fd(adapter, fd, acl, config) {
        Ok(s) => s,
        Err(e) => {
            mnt.stop();
            return Err(MountError::Mount(format!("FUSE handshake failed: {e}")));
        }
    };
    let _ = notifier.set(session.notifier());
    let (tx, rx) = crossbeam_channel::bounded::<End>(2);
    let tx2 = tx.clone();
    std::thread::Builder::new()
        .name("fuser-session".into())
        .spawn(move || {
            let _ = tx2.send(End::Session(session.run()));
        })
        .map_err(|e| {
            mnt.stop();
            MountError::Session(format!("cannot start the FUSE session: {e}"))
        })?;
    let on_signal = mnt.clone();
    let spawned = std::thread::Builder::new()
        .name("strata-stop".into())
        .spawn(move || {
            if let Ok(sig) = stop.wait() {
                tracing::info!("{sig:?}: stopping {}", on_signal.path.display());
                let ending = on_signal.stop();
                let _ = tx.send(End::Signal { ending });
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no stop-signal thread (SIGTERM will not unmount): {e}");
    }
    // `strata whence` and `strata fs stats` need it; a mount without it still works.
    let control =
        match crate::observe::control_server::start(union.clone(), stats, tracer, mountpoint) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(
                    "no control socket (strata whence/stats will not reach this mount): {e}"
                );
                None
            }
        };
    on_mounted();
    let r = match rx.recv() {
        Ok(End::Session(r)) => r,
        Ok(End::Signal { ending }) => {
            // Unmounting the last copy or an abort ends the session at once; a copy that
            // lives on in another namespace without fusectl to abort it ends only when
            // this process exits and closes /dev/fuse.
            let grace = if ending {
                STOP_GRACE
            } else {
                Duration::from_secs(1)
            };
            match rx.recv_timeout(grace) {
                Ok(End::Session(r)) => r,
                _ => {
                    tracing::info!(
                        "connection {} still open elsewhere; exiting ends it",
                        mnt.dev
                    );
                    Ok(())
                }
            }
        }
        Err(_) => Ok(()),
    };
    drop(control);
    r.map_err(|e| MountError::Session(format!("FUSE session ended with an error: {e}")))
}
