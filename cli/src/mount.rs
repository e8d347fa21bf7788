//! `strata mount` / `strata umount`, and the fuse-overlayfs and mount.fuse3 call forms.

use clap::Args;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use strata_fs::MountOptions;
use strata_sys::{dup_onto_stdio, fork, Forked};

/// Arguments of `strata mount`.
#[derive(Args, Debug)]
pub struct MountArgs {
    /// Mount options, comma-separated, as fuse-overlayfs: lowerdir=A:B (A on top),
    /// upperdir=U, workdir=W, plus uidmapping=, gidmapping=, squash_to_root, squash_to_uid=,
    /// squash_to_gid=, static_nlink, noacl, fsync=0, volatile, timeout=SECS, threaded=N, ro,
    /// VFS flags (nosuid, nodev, noexec, noatime, strictatime, ...); `remount,FLAGS` changes
    /// the flags of the live mount at MOUNTPOINT.
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,
    /// Stay in the foreground (log to stderr) instead of daemonizing.
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Foreground with debug logging (as fuse-overlayfs -d).
    #[arg(short = 'd', long)]
    debug: bool,
    /// Log file of the daemon (default: WORKDIR/strata.log, or none without a workdir).
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Write one JSON line per FUSE request to FILE (also -o trace=FILE); see docs/tracing.md.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Trace only these ops, comma-separated (read,write,lookup,...; also -o trace_ops=a:b).
    #[arg(long, value_name = "OPS", requires = "trace")]
    trace_ops: Option<String>,
    /// Trace only paths matching GLOB (*, ?, ** across directories; also -o trace_path=GLOB).
    #[arg(long, value_name = "GLOB", requires = "trace")]
    trace_path: Option<String>,
    /// `SOURCE MOUNTPOINT` (mount.fuse3 form) or `MOUNTPOINT`.
    #[arg(required = true, num_args = 1..=2, value_name = "MOUNTPOINT")]
    targets: Vec<PathBuf>,
}

/// Arguments of `strata umount`.
#[derive(Args, Debug)]
pub struct UmountArgs {
    /// The mountpoint.
    mountpoint: PathBuf,
}

/// Turn `strata -o OPTS MNT` (podman's mount_program) and `strata SRC MNT -o OPTS`
/// (mount.fuse3) into `strata mount ...`.
pub fn rewrite_helper_form(argv: Vec<OsString>, subcommands: &[String]) -> Vec<OsString> {
    let Some(first) = argv.get(1).and_then(|a| a.to_str()) else {
        return argv;
    };
    let is_known = subcommands.iter().any(|s| s == first)
        || first.starts_with("--")
        || matches!(first, "-h" | "-V");
    let has_o = argv.iter().skip(1).any(|a| a == "-o");
    if is_known || !has_o {
        return argv;
    }
    let mut out = Vec::with_capacity(argv.len() + 1);
    out.push(argv[0].clone());
    out.push(OsString::from("mount"));
    out.extend(argv.into_iter().skip(1));
    out
}

/// Mount as asked; daemonizes unless -f, and returns once the mount is live.
pub fn run_mount(args: MountArgs, log_level: &str) -> Result<(), String> {
    let mountpoint = match args.targets.as_slice() {
        [m] | [_, m] => m.clone(),
        _ => return Err("give the mountpoint (and optionally a source before it)".into()),
    };
    if strata_fs::fuse::remount::is_remount(&args.options) {
        // mount(8) runs us (through mount.fuse3) for `mount -o remount,... MNT` too.
        crate::logging::init_stderr(log_level);
        return strata_fs::fuse::remount::remount(&mountpoint, &args.options);
    }
    let mut opts = MountOptions::parse(&args.options)?;
    if let Some(t) = &args.trace {
        opts.trace.file = Some(strata_fs::observe::trace::absolute(t));
    }
    if let Some(o) = &args.trace_ops {
        opts.trace.ops = strata_fs::observe::trace::parse_ops(o)?;
    }
    if let Some(g) = &args.trace_path {
        opts.trace.path = Some(strata_fs::observe::trace::Glob::new(g));
    }
    if let [source, _] = args.targets.as_slice() {
        if opts.fsname == "strata" && source.as_os_str() != "none" {
            opts.fsname = source.display().to_string();
        }
    }
    let mountpoint = std::fs::canonicalize(&mountpoint)
        .map_err(|e| format!("mountpoint {}: {e}", mountpoint.display()))?;
    if !mountpoint.is_dir() {
        return Err(format!(
            "mountpoint {} is not a directory",
            mountpoint.display()
        ));
    }
    let log_file = args
        .log_file
        .clone()
        .or_else(|| opts.workdir.as_ref().map(|w| w.join("strata.log")));
    let level = if args.debug { "debug" } else { log_level };
    // Lowerdirs that are lazily pulled layers of a store get their filler (before the
    // branches are opened; its threads start only once the daemon serves).
    strata_fs::union::lazy_fill::set_provider(Box::new(
        strata_runtime::transfer::lazy::fill::filler_for,
    ));
    let union = strata_fs::prepare(opts).map_err(|e| e.to_string())?;
    if args.foreground || args.debug {
        crate::logging::init_stderr(level);
        return strata_fs::serve(union, &mountpoint, || {
            tracing::info!("mounted at {}", mountpoint.display())
        })
        .map_err(|e| e.to_string());
    }
    daemonize_and_serve(union, &mountpoint, level, log_file.as_deref())
}

fn daemonize_and_serve(
    union: strata_fs::Union,
    mountpoint: &Path,
    level: &str,
    log_file: Option<&Path>,
) -> Result<(), String> {
    // Close-on-exec: a helper the daemon keeps running (fusermount3 for auto_unmount) must not
    // hold the write end, or the parent would wait for EOF forever.
    let (rd, wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the mount command has started no thread yet (the union's workers start in
    // the child, after this fork).
    #[allow(unsafe_code)]
    let forked = unsafe { fork() };
    match forked.map_err(|e| format!("fork: {}", std::io::Error::from(e)))? {
        Forked::Parent(_) => {
            drop(wr);
            let mut msg = String::new();
            let _ = std::fs::File::from(rd).read_to_string(&mut msg);
            match msg.strip_prefix("ok") {
                Some(_) => Ok(()),
                None if msg.is_empty() => {
                    Err("the mount daemon exited before the mount was live".into())
                }
                None => Err(msg.trim_end().to_string()),
            }
        }
        Forked::Child => {
            drop(rd);
            let _ = nix::unistd::setsid();
            if let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                for fd in 0..=2 {
                    let _ = dup_onto_stdio(null.as_fd(), fd);
                }
            }
            match log_file {
                Some(p) => crate::logging::init_file(level, p),
                None => crate::logging::init_stderr(level),
            }
            // The parent waits for EOF on the pipe: close it as soon as the mount is live.
            let mut wr = Some(std::fs::File::from(wr));
            let r = strata_fs::serve(union, mountpoint, || {
                if let Some(mut w) = wr.take() {
                    let _ = w.write_all(b"ok");
                }
            });
            if let Err(e) = &r {
                tracing::error!("{e}");
                if let Some(mut w) = wr.take() {
                    let _ = w.write_all(e.to_string().as_bytes());
                }
            }
            std::process::exit(if r.is_ok() { 0 } else { 1 });
        }
    }
}

/// Unmount the strata mount at the top of MOUNTPOINT, and only that one: it is named by
/// its device, so a mount stacked or remounted meanwhile is never taken instead. Retries a
/// busy mount briefly, then detaches exactly that mount lazily.
pub fn run_umount(args: UmountArgs) -> Result<(), String> {
    use strata_fs::fuse::mount::{top_mount, unmount_if, Unmounted};
    let given = &args.mountpoint;
    let abs = std::path::absolute(given).map_err(|e| format!("{}: {e}", given.display()))?;
    // mountinfo spells canonical paths; resolve only when needed (a stat of a mount whose
    // daemon hangs would hang too).
    let (mnt, top) = match top_mount(&abs) {
        Some(t) => (abs, t),
        None => {
            let c = std::fs::canonicalize(&abs).map_err(|e| format!("{}: {e}", given.display()))?;
            match top_mount(&c) {
                Some(t) => (c, t),
                None => return Err(format!("{} is not mounted", given.display())),
            }
        }
    };
    if top.fstype != "fuse.strata" && top.fstype != "fuse" {
        return Err(format!(
            "{} is not a strata mount (the mount there is {})",
            mnt.display(),
            top.fstype
        ));
    }
    match unmount_if(&mnt, top.dev, std::time::Duration::from_secs(1)) {
        // NotOurs: it went away meanwhile (its daemon stopped); nothing else is touched.
        Unmounted::Yes | Unmounted::NotOurs => Ok(()),
        Unmounted::Failed(e) => Err(format!("cannot unmount {}: {e}", mnt.display())),
    }
}
