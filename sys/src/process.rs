//! Processes: fork (unsafe: the caller must be single-threaded), exit without unwinding,
//! signal dispositions and standard streams.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid};

use crate::check;

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

/// Exit immediately without running destructors or atexit handlers (for forked children).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
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

/// Duplicate `fd` onto the standard stream number `target` (0, 1 or 2).
pub fn dup_onto_stdio(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    if !(0..=2).contains(&target) {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: dup2 onto a standard stream number; the old stream is replaced on purpose.
    check(unsafe { libc::dup2(fd.as_raw_fd(), target) }).map(|_| ())
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
