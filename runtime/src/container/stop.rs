//! `strata kill` and `stop`: signals to a container's init.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::container::{self, Status};
use crate::err;
use crate::store::Store;
use crate::util::{Ctx, Result};

use super::reconcile::{reconcile, wait_exited, wait_until};

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

/// Stop: SIGTERM (or the container's `--stop-signal`), SIGKILL after `timeout` (default
/// its `--stop-timeout`, else 10 s), wait for the exit. A command that is PID 1 without a
/// handler for the signal ignores it (the kernel's rule for a namespace's init), so it
/// ends at the SIGKILL, as with docker.
pub fn stop(store: &Store, id: &str, timeout: Option<Duration>) -> Result<()> {
    let st = reconcile(store, id)?;
    if st.status != Status::Running || !container::init_alive(&st) {
        if container::supervisor_alive(&st) {
            // Between two runs of a restart policy: keep it from starting again.
            container::update_state(store, id, |st| st.stopping = true)?;
            wait_until(Instant::now() + Duration::from_secs(5), || {
                container::load_state(store, id)
                    .map(|s| !container::supervisor_alive(&s) || s.status == Status::Running)
                    .unwrap_or(true)
            });
            if container::load_state(store, id)?.status == Status::Running {
                return stop(store, id, timeout);
            }
        }
        return Ok(());
    }
    let cfg = container::load_config(store, id)?;
    let sig = match &cfg.extras.stop_signal {
        Some(s) => parse_signal(s)?,
        None => Signal::SIGTERM,
    };
    let timeout = timeout.unwrap_or(Duration::from_secs(cfg.extras.stop_timeout.unwrap_or(10)));
    // The restart policy must not start it again.
    container::update_state(store, id, |st| st.stopping = true)?;
    kill_container(store, id, sig)?;
    let gone = wait_until(Instant::now() + timeout, || !container::init_alive(&st));
    if !gone {
        if let Some(pid) = st.pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    wait_exited(store, id)?;
    Ok(())
}
