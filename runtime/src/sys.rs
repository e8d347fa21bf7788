//! Thin wrappers over the syscalls that need `unsafe`: everything unsafe in this crate lives here.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid};

/// Which side of a fork we are on.
pub enum Forked {
    /// In the parent; the child's pid.
    Parent(Pid),
    /// In the child.
    Child,
}

/// fork(2).
///
/// # Safety
///
/// The caller must be single-threaded: the child gets only the calling thread, so a lock
/// another thread held (the allocator's, stdio's) would stay locked in it forever. The child
/// then execs or runs plain code until it exits.
pub unsafe fn fork() -> nix::Result<Forked> {
    // SAFETY: the caller is single-threaded (this function's contract).
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// Exit immediately without running destructors or atexit handlers (for forked children).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

fn cpath(p: &Path) -> nix::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

fn cstr(s: &OsStr) -> nix::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| Errno::EINVAL)
}

/// Drop `cap` from the bounding set (PR_CAPBSET_DROP).
pub fn capbset_drop(cap: u32) -> nix::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    Errno::result(r).map(drop)
}

/// Clear the ambient capability set.
pub fn clear_ambient_caps() -> nix::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// Set the effective, permitted and inheritable capability sets (64-bit masks) of this thread.
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> nix::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let lo = |m: u64| m as u32;
    let hi = |m: u64| (m >> 32) as u32;
    let data = [
        Data {
            effective: lo(effective),
            permitted: lo(permitted),
            inheritable: lo(inheritable),
        },
        Data {
            effective: hi(effective),
            permitted: hi(permitted),
            inheritable: hi(inheritable),
        },
    ];
    // SAFETY: header and data are valid, correctly laid out v3 capability structures.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    Errno::result(r).map(drop)
}

/// lgetxattr(2): the value of `name` on `path` (not following symlinks), None if absent.
pub fn lgetxattr(path: &Path, name: &OsStr) -> nix::Result<Option<Vec<u8>>> {
    let p = cpath(path)?;
    let n = cstr(name)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: p and n are NUL-terminated; buf is valid for buf.len() bytes.
        let r =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        match Errno::result(r) {
            Ok(len) => {
                buf.truncate(len as usize);
                return Ok(Some(buf));
            }
            Err(Errno::ENODATA) => return Ok(None),
            Err(Errno::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

/// lsetxattr(2) on `path`, not following symlinks.
pub fn lsetxattr(path: &Path, name: &OsStr, value: &[u8]) -> nix::Result<()> {
    let p = cpath(path)?;
    let n = cstr(name)?;
    // SAFETY: p and n are NUL-terminated; value is valid for value.len() bytes.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// llistxattr(2): the xattr names on `path`, not following symlinks.
pub fn llistxattr(path: &Path) -> nix::Result<Vec<Vec<u8>>> {
    let p = cpath(path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: p is NUL-terminated; buf is valid for buf.len() bytes.
        let r = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        match Errno::result(r) {
            Ok(len) => {
                buf.truncate(len as usize);
                return Ok(buf
                    .split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect());
            }
            Err(Errno::ENOTSUP) => return Ok(Vec::new()),
            Err(Errno::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

/// The window size of the terminal on `fd`.
pub fn get_winsize(fd: BorrowedFd<'_>) -> nix::Result<libc::winsize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into ws.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCGWINSZ,
            &mut ws as *mut libc::winsize,
        )
    };
    Errno::result(r).map(|_| ws)
}

/// Set the window size of the terminal on `fd`.
pub fn set_winsize(fd: BorrowedFd<'_>, ws: &libc::winsize) -> nix::Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize from ws.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws as *const libc::winsize) };
    Errno::result(r).map(drop)
}

/// Unlock the pty master `master` and open its slave (TIOCGPTPEER), which lives in the
/// master's devpts instance; also the pty's number N (/dev/pts/N there).
pub fn pty_peer(master: BorrowedFd<'_>) -> nix::Result<(OwnedFd, u32)> {
    use std::os::fd::FromRawFd;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int.
    let r = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCSPTLCK,
            &unlock as *const libc::c_int,
        )
    };
    Errno::result(r)?;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int.
    let r = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTN,
            &mut n as *mut libc::c_uint,
        )
    };
    Errno::result(r)?;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor, owned right away.
    let fd = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let fd = Errno::result(fd)?;
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, n))
}

/// Make the terminal on `fd` the controlling terminal of this (session leader) process.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0 as libc::c_int) };
    Errno::result(r).map(drop)
}

/// Bring the loopback interface up (a new network namespace starts with it down).
pub fn loopback_up() -> nix::Result<()> {
    use std::os::fd::FromRawFd;
    // SAFETY: socket(2) with constant arguments; the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    let raw = Errno::result(raw)?;
    // SAFETY: raw is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write one ifreq.
    let r = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS,
            &mut req as *mut libc::ifreq,
        )
    };
    Errno::result(r)?;
    // SAFETY: the flags member was just filled in by the kernel.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: as above.
    let r = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFFLAGS,
            &mut req as *mut libc::ifreq,
        )
    };
    Errno::result(r).map(drop)
}

/// Reset every signal disposition to the default (an exec keeps ignored signals ignored, and
/// Rust ignores SIGPIPE) and unblock all signals.
pub fn reset_signals() -> nix::Result<()> {
    use nix::sys::signal::{signal, SigHandler, SigSet, Signal};
    for sig in Signal::iterator() {
        if sig == Signal::SIGKILL || sig == Signal::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no Rust code in signal context.
        unsafe { signal(sig, SigHandler::SigDfl) }?;
    }
    SigSet::all().thread_unblock()
}

/// fork(2) into a new pid namespace (clone with CLONE_NEWPID): the child is its PID 1. Unlike
/// unshare(CLONE_NEWPID), the caller's later children stay in its own namespace, so it can
/// still start threads (the pty copiers).
///
/// # Safety
///
/// As for [`fork`]: the caller must be single-threaded.
pub unsafe fn fork_new_pid_ns() -> nix::Result<Forked> {
    // SAFETY: a raw clone without CLONE_VM and a NULL stack behaves like fork(2): the child
    // runs on a copy of this process, single-threaded by this function's contract.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWPID | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match Errno::result(r)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

/// Make the mount at `path` and every mount below it read-only, leaving their other flags
/// alone (mount_setattr with AT_RECURSIVE, Linux 5.12+; ENOSYS before).
pub fn mount_readonly_recursive(path: &Path) -> nix::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let p = cpath(path)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: p is NUL-terminated and attr is a valid struct mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            p.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r).map(drop)
}

/// Refuse the keyring syscalls (add_key, request_key, keyctl) with EPERM, as docker's
/// default seccomp profile does: keyrings belong to the user namespace, so a rootful
/// container's root would otherwise read and change the host root's user keyring. Needs
/// no_new_privs (or CAP_SYS_ADMIN). No filter on architectures other than x86_64 and aarch64.
pub fn deny_keyring_syscalls() -> nix::Result<()> {
    // (audit arch, syscall-number bits to clear, add_key, request_key, keyctl).
    #[cfg(target_arch = "x86_64")]
    let abis: &[(u32, u32, [u32; 3])] = &[
        // x86_64, and x32 (the same numbers with bit 30 set).
        (0xC000_003E, 0x4000_0000, [248, 249, 250]),
        (0x4000_0003, 0, [286, 287, 288]),
    ];
    #[cfg(target_arch = "aarch64")]
    let abis: &[(u32, u32, [u32; 3])] = &[(0xC000_00B7, 0, [217, 218, 219])];
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let abis: &[(u32, u32, [u32; 3])] = &[];
    if abis.is_empty() {
        return Ok(());
    }
    let op = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = |offset: u32| op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset);
    let allow = op(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW);
    let deny = op(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
    );
    // struct seccomp_data: nr at offset 0, arch at 4. For each ABI: if the arch matches,
    // test the number and return; else skip the block (the accumulator still holds arch).
    let mut prog = vec![load(4)];
    for (arch, clear, nrs) in abis {
        let mut block = vec![load(0)];
        if *clear != 0 {
            block.push(op(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, !clear));
        }
        for nr in nrs {
            block.push(jeq(*nr, 0, 1));
            block.push(deny);
        }
        block.push(allow);
        prog.push(jeq(*arch, 0, block.len() as u8));
        prog.extend(block);
    }
    prog.push(allow);
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: fprog points at prog, a valid classic BPF program of fprog.len instructions
    // that outlives the call (the kernel copies it).
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    Errno::result(r).map(drop)
}

/// ioctl(FICLONE): make `dst` share all of `src`'s extents (a reflink). Filesystems that
/// cannot (ext4, tmpfs) answer EOPNOTSUPP, EXDEV or EINVAL; the caller copies instead.
pub fn ficlone(dst: BorrowedFd<'_>, src: BorrowedFd<'_>) -> nix::Result<()> {
    // _IOW(0x94, 9, int), as in linux/fs.h.
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: both descriptors are open for the call; the argument is an int fd by value.
    let r = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) };
    Errno::result(r).map(drop)
}

/// Point this process's command line (/proc/self/cmdline) at `title` (NUL-separated
/// arguments, NUL-terminated), with prctl(PR_SET_MM); needs CAP_SYS_RESOURCE. The memory is
/// leaked on purpose: the kernel reads it for as long as the process lives.
pub fn set_cmdline(title: Vec<u8>) -> nix::Result<()> {
    let area: &'static mut [u8] = Vec::leak(title);
    let start = area.as_ptr() as libc::c_ulong;
    let end = start + area.len() as libc::c_ulong;
    let set = |opt: libc::c_int, addr: libc::c_ulong| {
        // SAFETY: PR_SET_MM only records the addresses; they lie in this live, leaked buffer.
        let r = unsafe { libc::prctl(libc::PR_SET_MM, opt as libc::c_ulong, addr, 0, 0) };
        Errno::result(r).map(drop)
    };
    // The kernel keeps start <= end at each step: which goes first depends on where the
    // new buffer lies relative to the old area (the heap is usually below the stack).
    set(libc::PR_SET_MM_ARG_START, start)
        .and_then(|()| set(libc::PR_SET_MM_ARG_END, end))
        .or_else(|_| {
            set(libc::PR_SET_MM_ARG_END, end).and_then(|()| set(libc::PR_SET_MM_ARG_START, start))
        })
}
