//! Becoming the container's process in a forked child: session, terminal, identity,
//! working directory, then execve. Errors are written to a pipe the supervisor reads.

pub mod init;
pub mod limits;
pub mod pty;
pub mod title;
pub mod user;

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::unistd::{Gid, Uid};

use crate::process::user::ExecUser;
use crate::sys;

/// Default PATH when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to execute and as whom.
pub struct Target<'a> {
    /// argv.
    pub args: &'a [String],
    /// KEY=VALUE.
    pub env: &'a [String],
    /// Working directory (absolute, inside the container).
    pub cwd: &'a str,
    /// Identity.
    pub user: &'a ExecUser,
}

/// Report `msg` on `err_fd` and exit with `code` (forked children only).
pub fn fail(err_fd: &OwnedFd, code: i32, msg: &str) -> ! {
    let _ = nix::unistd::write(err_fd.as_fd(), msg.as_bytes());
    sys::exit_now(code)
}

/// Find `cmd` along the PATH of `env`, as execvp would, but with the container's PATH.
pub fn find_executable(cmd: &str, env: &[String]) -> Option<String> {
    if cmd.contains('/') {
        return Some(cmd.to_string());
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| format!("{d}/{cmd}"))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file())
                && nix::unistd::access(Path::new(p), nix::unistd::AccessFlags::X_OK).is_ok()
        })
}

/// In a forked child: set up the session, terminal and identity and exec the target.
/// Never returns; failures go to `err_fd` with docker's exit codes (125 setup, 126 cannot
/// execute, 127 not found).
pub fn exec(t: &Target<'_>, tty: Option<OwnedFd>, err_fd: &OwnedFd) -> ! {
    if let Err(e) = sys::reset_signals() {
        fail(err_fd, 125, &format!("cannot reset signals: {e}"));
    }
    let _ = nix::unistd::setsid();
    if let Some(slave) = tty {
        if let Err(e) = sys::set_controlling_tty(slave.as_fd()) {
            fail(
                err_fd,
                125,
                &format!("cannot set the controlling terminal: {e}"),
            );
        }
        let r = nix::unistd::dup2_stdin(slave.as_fd())
            .and_then(|()| nix::unistd::dup2_stdout(slave.as_fd()))
            .and_then(|()| nix::unistd::dup2_stderr(slave.as_fd()));
        if let Err(e) = r {
            fail(err_fd, 125, &format!("cannot attach the terminal: {e}"));
        }
        if slave.as_raw_fd() > 2 {
            drop(slave);
        }
    }
    let groups: Vec<Gid> = t.user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    // A user namespace with a single-id map denies setgroups: keep the (empty) list then.
    if let Err(e) = nix::unistd::setgroups(&groups).or_else(|e| {
        if crate::isolation::rootless::in_userns() {
            Ok(())
        } else {
            Err(e)
        }
    }) {
        fail(
            err_fd,
            125,
            &format!("cannot set supplementary groups: {e}"),
        );
    }
    if let Err(e) = nix::unistd::setgid(Gid::from_raw(t.user.gid)) {
        fail(err_fd, 125, &format!("cannot set gid {}: {e}", t.user.gid));
    }
    if let Err(e) = nix::unistd::setuid(Uid::from_raw(t.user.uid)) {
        let hint = if crate::isolation::rootless::in_userns() {
            " (rootless: only ids mapped from /etc/subuid exist; add a range for this user)"
        } else {
            ""
        };
        fail(
            err_fd,
            125,
            &format!("cannot set uid {}: {e}{hint}", t.user.uid),
        );
    }
    if let Err(e) = nix::unistd::chdir(t.cwd) {
        fail(
            err_fd,
            125,
            &format!("cannot change to the working directory {}: {e}", t.cwd),
        );
    }
    let Some(cmd) = t.args.first() else {
        fail(
            err_fd,
            125,
            "no command: give one after the image or set CMD in the image",
        );
    };
    let Some(path) = find_executable(cmd, t.env) else {
        fail(
            err_fd,
            127,
            &format!("exec: {cmd:?}: executable file not found in $PATH"),
        );
    };
    let to_c = |s: &String| CString::new(s.as_bytes()).ok();
    let (Some(cpath), Some(argv), Some(envp)) = (
        CString::new(path.as_bytes()).ok(),
        t.args.iter().map(to_c).collect::<Option<Vec<_>>>(),
        t.env.iter().map(to_c).collect::<Option<Vec<_>>>(),
    ) else {
        fail(
            err_fd,
            125,
            "a command argument or environment variable contains a NUL byte",
        );
    };
    let e = nix::unistd::execve(&cpath, &argv, &envp).err();
    let code = match e {
        Some(nix::errno::Errno::ENOENT) => 127,
        _ => 126,
    };
    fail(
        err_fd,
        code,
        &format!("exec {path}: {}", e.map(|e| e.desc()).unwrap_or("failed")),
    )
}
