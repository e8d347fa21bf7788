//! `strata run` and `start`: supervise a container in the foreground, or detached as a
//! daemon that reports once the command has started.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::os::fd::AsFd;
use std::path::Path;

use nix::fcntl::OFlag;

use crate::container::{self, ContainerConfig, Status};
use crate::err;
use crate::store::Store;
use crate::util::{Ctx, Result};
use strata_sys::{self as sys, Forked};

use super::create::{create, RunOptions};
use super::reconcile::reconcile;
use super::supervise::{notify, open_fd, supervise, Io};

/// Start the supervisor as a daemon; returns once the container's command has started.
pub fn detach(store: &Store, cfg: &ContainerConfig) -> Result<()> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "cannot create a pipe")?;
    // SAFETY: the CLI is single-threaded here: no pty or progress thread has started.
    #[allow(unsafe_code)]
    let forked = unsafe { sys::fork() };
    match forked.ctx(|| "cannot fork")? {
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
    // As docker: `-it` with a pipe for stdin would copy the pipe into a pty whose shell
    // never sees the pipe's end (a pty has no EOF to pass on) and ignores SIGTERM, as
    // interactive shells do. Refused before anything is created.
    if o.tty && o.interactive && !o.detach && !std::io::stdin().is_terminal() {
        return Err(err!(
            "the input device is not a TTY: drop -t when stdin is a pipe or a file"
        ));
    }
    let cfg = create(store, o)?;
    if o.detach {
        detach(store, &cfg)?;
        Ok((cfg.id, None))
    } else {
        let code = supervise(store, &cfg, Io::Foreground, &mut None)?;
        Ok((cfg.id, Some(code)))
    }
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
