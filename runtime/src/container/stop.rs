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

/// Send `sig` to the container's init (which forwards it to the command), then wait
/// (bounded) until a container the signal ends is reaped and its exit recorded, so that
/// `kill` then `start` never finds it still "running". SIGKILL always ends it; for another
/// signal the command may handle it, so the wait is for init to die within a short grace.
pub fn kill_container(store: &Store, id: &str, sig: Signal) -> Result<()> {
    let st = signal(store, id, sig)?;
    let grace = if sig == Signal::SIGKILL {
        Duration::from_secs(10)
    } else {
        Duration::from_millis(500)
    };
    if wait_until(Instant::now() + grace, || !container::init_alive(&st)) {
        wait_exited(store, id)?;
    }
    Ok(())
}

/// Send `sig` to the container's init without waiting; the state it was sent to.
fn signal(store: &Store, id: &str, sig: Signal) -> Result<container::State> {
    let st = reconcile(store, id)?;
    if st.status != Status::Running || !container::init_alive(&st) {
        return Err(err!("container {id} is not running"));
    }
    if sig == Signal::SIGKILL || sig == Signal::SIGTERM {
        container::update_state(store, id, |st| st.stopping = true)?;
    }
    let pid = st.pid.ok_or_else(|| err!("container {id} has no pid"))?;
    kill(Pid::from_raw(pid), sig).ctx(|| format!("cannot signal container {id}"))?;
    Ok(st)
}

/// Stop: SIGTERM (or the image's stop signal), SIGKILL after `timeout`, wait for the exit.
/// A container run with `--rm` is removed by its supervisor once it exits: that is a stop too.
pub fn stop(store: &Store, id: &str, timeout: Duration) -> Result<()> {
    let st = reconcile(store, id)?;
    if st.status != Status::Running || !container::init_alive(&st) {
        return Ok(());
    }
    if let Err(e) = signal(store, id, Signal::SIGTERM) {
        // It ended meanwhile (another stop, its own exit): stopped is what was asked.
        if container::init_alive(&st) {
            return Err(e);
        }
    }
    let gone = wait_until(Instant::now() + timeout, || !container::init_alive(&st));
    if !gone {
        if let Some(pid) = st.pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    wait_exited(store, id)?;
    Ok(())
}
