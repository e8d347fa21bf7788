//! The kernel side of a strata mount: mounting /dev/fuse at a path (mount(2) as root,
//! fusermount3 otherwise), knowing which FUSE connection is ours, and ending only that.
//!
//! fuser's `Session::new` is not used on purpose: when its loop ends it unmounts *by path*,
//! so a daemon whose connection ended late (the last copy of its mount, in another mount
//! namespace, went away) took down whatever was mounted at that path by then. Here, as in
//! libfuse and fuse-overlayfs, the daemon only ever ends its own connection: it unmounts
//! the path only while the top mount there is still its own (same device number), and it
//! never touches the path after the kernel has ended the connection.

use crate::config::options::MountOptions;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The device number of a mounted filesystem; for FUSE it names the connection
/// (/sys/fs/fuse/connections/N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dev {
    /// Major number (0 for FUSE).
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl Dev {
    /// This connection's directory under fusectl (named by the kernel's dev_t encoding).
    fn conn_dir(self) -> PathBuf {
        let n = (u64::from(self.major) << 20) | u64::from(self.minor);
        PathBuf::from(format!("/sys/fs/fuse/connections/{n}"))
    }
}

impl std::fmt::Display for Dev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct MountEntry {
    /// Mount id.
    pub id: u64,
    /// Id of the mount this one sits on.
    pub parent: u64,
    /// Device of the mounted filesystem.
    pub dev: Dev,
    /// Where it is mounted.
    pub point: PathBuf,
    /// Filesystem type (`fuse.strata` for strata).
    pub fstype: String,
}

fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4);
        if b[i] == b'\\' && oct.is_some_and(|o| o.iter().all(|c| (b'0'..=b'7').contains(c))) {
            let o = &b[i + 1..i + 4];
            out.push((o[0] - b'0') * 64 + (o[1] - b'0') * 8 + (o[2] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

fn parse_line(l: &str) -> Option<MountEntry> {
    let f: Vec<&str> = l.split(' ').collect();
    let (major, minor) = f.get(2)?.split_once(':')?;
    let dash = f.iter().position(|x| *x == "-")?;
    Some(MountEntry {
        id: f.first()?.parse().ok()?,
        parent: f.get(1)?.parse().ok()?,
        dev: Dev {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        },
        point: unescape(f.get(4)?),
        fstype: f.get(dash + 1)?.to_string(),
    })
}

/// The mount visible at `path` in this mount namespace (the top of a stack), read from
/// /proc/self/mountinfo: no filesystem is touched, so a hung mount cannot block this.
pub fn top_mount(path: &Path) -> Option<MountEntry> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let at: Vec<MountEntry> = info
        .lines()
        .filter_map(parse_line)
        .filter(|m| m.point == path)
        .collect();
    // A mount stacked on another at the same point has that one as its parent.
    at.iter()
        .rev()
        .find(|m| !at.iter().any(|o| o.parent == m.id))
        .cloned()
}

/// A FUSE mount this process made, and what ending it needs.
#[derive(Debug)]
pub struct FuseMount {
    /// The mount point (canonical).
    pub path: PathBuf,
    /// The connection (device) of the mount.
    pub dev: Dev,
    /// fusermount3 kept running for `auto_unmount`: it unmounts when this closes.
    _auto_unmount: Option<(std::process::Child, OwnedFd)>,
}

/// What a mount asks of the kernel, from the options.
struct Plan {
    flags: MsFlags,
    /// Flag names as the user gave them, for fusermount3.
    words: Vec<String>,
    allow_other: bool,
    auto_unmount: bool,
}

/// Map the VFS flag options in order: a later option wins over an earlier one, the user's
/// over the default (dev,suid for root, as fuse-overlayfs and libfuse give root).
fn plan(opts: &MountOptions, writable: bool, root: bool) -> Plan {
    let mut p = Plan {
        flags: MsFlags::empty(),
        words: Vec::new(),
        allow_other: root,
        auto_unmount: false,
    };
    if !writable {
        p.flags |= MsFlags::MS_RDONLY;
        p.words.push("ro".into());
    }
    for k in &opts.kernel {
        let (set, clear) = match k.as_str() {
            "allow_other" | "allow_root" => {
                p.allow_other = true;
                continue;
            }
            "auto_unmount" => {
                p.auto_unmount = true;
                continue;
            }
            w => match crate::config::vfs_flags::flag_word(w) {
                Some(sc) => sc,
                None => continue,
            },
        };
        p.flags = (p.flags - clear) | set;
        p.words.push(k.clone());
    }
    p
}

/// `fsname` escaped for a fusermount3 option list (`,` and `\` are special there).
fn escape_opt(s: &str) -> String {
    s.replace('\\', "\\\\").replace(',', "\\,")
}

/// Mount /dev/fuse at `path`; returns the mount and the /dev/fuse fd to serve.
pub fn mount(
    path: &Path,
    opts: &MountOptions,
    writable: bool,
) -> Result<(FuseMount, OwnedFd), String> {
    // mountinfo names mount points canonically; so must we, to find ours again.
    let path = &std::fs::canonicalize(path).map_err(|e| e.to_string())?;
    let root = nix::unistd::geteuid().is_root();
    let p = plan(opts, writable, root);
    if p.auto_unmount && !p.allow_other {
        // fusermount3 leaves such a mount behind when the daemon dies (fuser refused it too).
        return Err("auto_unmount needs allow_other or allow_root".into());
    }
    let (fd, keep) = match (root, p.auto_unmount) {
        // auto_unmount is fusermount3's job (it stays behind to unmount).
        (true, false) => match mount_syscall(path, opts, &p) {
            Ok(fd) => (fd, None),
            Err(Errno::EPERM) => mount_fusermount(path, opts, &p)?,
            Err(e) => return Err(format!("mount(2) at {}: {}", path.display(), e.desc())),
        },
        _ => mount_fusermount(path, opts, &p)?,
    };
    let dev = match top_mount(path) {
        Some(m) if m.fstype.starts_with("fuse") => m.dev,
        _ => return Err(format!("{} is not mounted after mounting", path.display())),
    };
    tracing::debug!("mounted {} as FUSE connection {dev}", path.display());
    let m = FuseMount {
        path: path.to_path_buf(),
        dev,
        _auto_unmount: keep,
    };
    Ok((m, fd))
}

fn open_dev_fuse() -> Result<OwnedFd, Errno> {
    nix::fcntl::open("/dev/fuse", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
}

/// mount(2) with type fuse.strata, so the subtype shows in /proc/mounts.
fn mount_syscall(path: &Path, opts: &MountOptions, p: &Plan) -> Result<OwnedFd, Errno> {
    let fd = open_dev_fuse()?;
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    let mut data = format!(
        "fd={},rootmode=40000,user_id={uid},group_id={gid},default_permissions",
        fd.as_raw_fd()
    );
    if p.allow_other {
        data.push_str(",allow_other");
    }
    nix::mount::mount(
        Some(opts.fsname.as_str()),
        path,
        Some("fuse.strata"),
        p.flags,
        Some(data.as_str()),
    )?;
    Ok(fd)
}

/// Mount through the setuid fusermount3, which passes the /dev/fuse fd back over a unix
/// socket named in `_FUSE_COMMFD`.
fn mount_fusermount(
    path: &Path,
    opts: &MountOptions,
    p: &Plan,
) -> Result<(OwnedFd, Option<(std::process::Child, OwnedFd)>), String> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    // Only fusermount3 may inherit its end.
    fcntl(&theirs, FcntlArg::F_SETFD(FdFlag::empty())).map_err(|e| format!("fcntl: {e}"))?;
    let mut o = vec![
        format!("fsname={}", escape_opt(&opts.fsname)),
        "subtype=strata".to_string(),
        "default_permissions".to_string(),
    ];
    if p.allow_other {
        o.push("allow_other".into());
    }
    if p.auto_unmount {
        o.push("auto_unmount".into());
    }
    // fusermount3 (3.14) knows only these flag words and refuses others; the atime words
    // it lacks (relatime, strictatime, nodiratime) strata applies to its reads itself
    // (atime.rs), and lazytime or silent do not matter to a FUSE superblock.
    const KNOWN: &[&str] = &[
        "ro", "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "async", "sync", "atime",
        "noatime", "dirsync",
    ];
    o.extend(
        p.words
            .iter()
            .filter(|w| KNOWN.contains(&w.as_str()))
            .cloned(),
    );
    let child = Command::new("fusermount3")
        .arg("-o")
        .arg(o.join(","))
        .arg("--")
        .arg(path)
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    drop(theirs);
    let mut child = child.map_err(|e| format!("cannot run fusermount3 ({e}); install fuse3"))?;
    let got = strata_sys::recv_fd(ours.as_fd());
    let fd = match got {
        Ok(fd) => fd,
        Err(_) => {
            drop(ours);
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            return Err(format!(
                "fusermount3: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    };
    if p.auto_unmount {
        return Ok((fd, Some((child, ours))));
    }
    drop(ours);
    let _ = child.wait();
    Ok((fd, None))
}

/// How an unmount attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Unmounted {
    /// The mount was ours and is gone from the path.
    Yes,
    /// The top mount at the path is not ours (already unmounted here, or something else
    /// was mounted over or instead of it): nothing was touched.
    NotOurs,
    /// It was ours but could not be unmounted.
    Failed(String),
}

/// Unmount `path` if and only if the top mount there is `dev`; retries a busy mount for
/// `busy_wait`, then detaches exactly that mount lazily.
pub fn unmount_if(path: &Path, dev: Dev, busy_wait: Duration) -> Unmounted {
    let deadline = std::time::Instant::now() + busy_wait;
    loop {
        match top_mount(path) {
            Some(m) if m.dev == dev => {}
            _ => return Unmounted::NotOurs,
        }
        match nix::mount::umount2(path, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => return Unmounted::Yes,
            Err(Errno::EBUSY) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(Errno::EBUSY) => return detach_exact(path, dev),
            Err(Errno::EPERM) => return fusermount_unmount(path, dev),
            Err(Errno::EINVAL) => return Unmounted::NotOurs,
            Err(e) => return Unmounted::Failed(format!("umount: {}", e.desc())),
        }
    }
}

/// Lazily detach the mount at `path`, but only the one whose root is `dev`: it is named
/// through an fd of its root, so a mount stacked meanwhile is never the one detached.
fn detach_exact(path: &Path, dev: Dev) -> Unmounted {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match nix::fcntl::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => return Unmounted::Failed(format!("open: {}", e.desc())),
    };
    match strata_sys::statx_dev(fd.as_fd()) {
        Ok((major, minor)) if (Dev { major, minor }) == dev => {}
        Ok(_) => return Unmounted::NotOurs,
        Err(e) => return Unmounted::Failed(format!("statx: {e}")),
    }
    tracing::warn!("{} is busy; detaching it lazily", path.display());
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    match nix::mount::umount2(&by_fd, MntFlags::MNT_DETACH) {
        Ok(()) => Unmounted::Yes,
        Err(e) => Unmounted::Failed(format!("lazy umount: {}", e.desc())),
    }
}

/// An unprivileged unmount, through fusermount3: a plain one, then (still ours) a lazy one
/// as libfuse does.
fn fusermount_unmount(path: &Path, dev: Dev) -> Unmounted {
    let mut last = String::new();
    for args in [&["-u", "-q", "--"][..], &["-u", "-q", "-z", "--"][..]] {
        if !top_mount(path).is_some_and(|m| m.dev == dev) {
            return Unmounted::NotOurs;
        }
        let out = Command::new("fusermount3")
            .args(args)
            .arg(path)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => return Unmounted::Yes,
            Ok(o) => last = String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => return Unmounted::Failed(format!("cannot run fusermount3: {e}")),
        }
    }
    Unmounted::Failed(format!("fusermount3 -u: {last}"))
}

/// End connection `dev` through fusectl (/sys/fs/fuse/connections/N/abort), which every
/// copy of the mount in every namespace shares. False when fusectl is not mounted or the
/// connection is already gone.
pub fn abort(dev: Dev) -> bool {
    let p = dev.conn_dir().join("abort");
    std::fs::write(&p, b"1").is_ok()
}

impl FuseMount {
    /// Stop: unmount our mount from the path if it is still the top one there, then end the
    /// connection, so copies of it in other mount namespaces do not keep us serving.
    /// Returns whether the connection is known to be ending.
    pub fn stop(&self) -> bool {
        let mut ending = false;
        match unmount_if(&self.path, self.dev, Duration::ZERO) {
            Unmounted::Yes => {
                tracing::info!("unmounted {}", self.path.display());
                ending = true;
            }
            Unmounted::NotOurs => tracing::info!(
                "{} no longer shows this mount (connection {}); not touching it",
                self.path.display(),
                self.dev
            ),
            Unmounted::Failed(e) => {
                tracing::warn!("cannot unmount {}: {e}", self.path.display())
            }
        }
        abort(self.dev) || ending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse() {
        let l = "36 35 0:52 / /tmp/a\\040b rw,nosuid shared:1 - fuse.strata src rw,user_id=0";
        let m = parse_line(l).unwrap();
        assert_eq!((m.id, m.parent), (36, 35));
        assert_eq!(
            m.dev,
            Dev {
                major: 0,
                minor: 52
            }
        );
        assert_eq!(m.point, PathBuf::from("/tmp/a b"));
        assert_eq!(m.fstype, "fuse.strata");
    }

    #[test]
    fn later_flag_wins() {
        let o = MountOptions {
            kernel: vec!["nodev".into(), "nosuid".into(), "suid".into()],
            ..MountOptions::default()
        };
        let p = plan(&o, true, true);
        assert!(p.flags.contains(MsFlags::MS_NODEV));
        assert!(!p.flags.contains(MsFlags::MS_NOSUID));
        assert!(p.allow_other);
        assert!(plan(&o, false, false).flags.contains(MsFlags::MS_RDONLY));
    }
}
