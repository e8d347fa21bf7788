//! `strata kill` and `stop`: signals to a container's init.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::container::{self, Status};
use crate::err;
use crate::store::Store;
use crate::util::{Ctx, Result};

use super::reconcile::{reconcile, wait_exited};

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
    let running = |st: &container::State| st.status == Status::Running && container::init_alive(st);
    if !running(&st) && !container::supervisor_alive(&st) {
        return Ok(());
    }
    let cfg = container::load_config(store, id)?;
    let sig = match &cfg.extras.stop_signal {
        Some(s) => parse_signal(s)?,
        None => Signal::SIGTERM,
    };
    let timeout = timeout.unwrap_or(Duration::from_secs(cfg.extras.stop_timeout.unwrap_or(10)));
    // Set before any signal, so that a restart policy does not start it again.
    container::update_state(store, id, |st| st.stopping = true)?;
    // Until the supervisor is gone: the signal to whichever process is the container's init
    // (a restart policy may have started a new one meanwhile), SIGKILL once it outlived the
    // timeout.
    let deadline = Instant::now() + timeout + Duration::from_secs(15);
    let mut signalled: Option<(i32, Instant)> = None;
    loop {
        let st = container::load_state(store, id)?;
        let up = running(&st);
        if !up && !container::supervisor_alive(&st) || Instant::now() >= deadline {
            break;
        }
        if let (true, Some(pid)) = (up, st.pid) {
            match signalled {
                Some((p, at)) if p == pid => {
                    if at.elapsed() >= timeout {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
                _ => {
                    let _ = kill(Pid::from_raw(pid), sig);
                    signalled = Some((pid, Instant::now()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_exited(store, id)?;
    Ok(())
}
