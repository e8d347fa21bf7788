//! Putting right the record of a container whose supervisor died, and waiting for exits.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::container::{self, State, Status};
use crate::store::Store;
use crate::util::{now_secs, Result};

use super::supervise::cleanup;

/// True when the state names a supervisor that is gone: it was killed (or crashed) while
/// starting or running the container, and nobody recorded the end or cleaned up.
fn orphaned(st: &State) -> bool {
    match st.supervisor {
        Some(_) => !container::supervisor_alive(st),
        // A state written by an older strata: running as long as its init lives.
        None => st.status == Status::Running && !container::init_alive(st),
    }
}

/// Put right the state of a container whose supervisor died (SIGKILL, OOM, a crash) while
/// starting or running it: end its processes if any are left (init dies with the
/// supervisor, but an older strata, or a supervisor killed before init tied itself to it,
/// leaves them running with nobody to record their exit), unmount its root, remove its
/// cgroups, and mark a running one exited.
pub fn reconcile(store: &Store, id: &str) -> Result<State> {
    let st = container::load_state(store, id)?;
    if !orphaned(&st) {
        return Ok(st);
    }
    // Again under the lock: a new supervisor may have taken the container over meanwhile,
    // and must not find its fresh mount undone (it records itself under this lock).
    let _lock = store.lock_exclusive()?;
    let mut st = container::load_state(store, id)?;
    if !orphaned(&st) {
        return Ok(st);
    }
    if container::init_alive(&st) {
        if let Some(pid) = st.pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Whoever inherited init reaps it; the cgroup removal below kills any stragglers.
        wait_until(Instant::now() + Duration::from_secs(5), || {
            !container::init_alive(&st)
        });
    }
    cleanup(store, id)?;
    if st.status == Status::Running {
        st.status = Status::Exited;
        st.exit_code = st.exit_code.or(Some(if st.stopping { 137 } else { 255 }));
        st.finished_at = Some(now_secs());
        if !st.stopping {
            st.error = Some("the supervisor died; exit status unknown".into());
        }
    } else {
        st.error = Some("the supervisor died while starting the container".into());
    }
    st.pid = None;
    st.pid_start = None;
    st.supervisor = None;
    st.supervisor_start = None;
    container::save_state(store, id, &st)?;
    Ok(st)
}

/// Poll `done` every 20 ms until it holds or `deadline` passes; whether it held.
pub(crate) fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// Wait until the supervisor has recorded the exit (or died), then reconcile; `None` when
/// the container was removed meanwhile (run with `--rm`: its supervisor removes it on exit).
pub(crate) fn wait_exited(store: &Store, id: &str) -> Result<Option<State>> {
    let gone = || !container::Paths::new(store, id).config().exists();
    wait_until(Instant::now() + Duration::from_secs(15), || {
        gone()
            || container::load_state(store, id)
                .is_ok_and(|st| st.status != Status::Running || !container::supervisor_alive(&st))
    });
    match reconcile(store, id) {
        Ok(st) => Ok(Some(st)),
        // The supervisor of a --rm container removes the files once it has recorded the exit.
        Err(_) if gone() => Ok(None),
        Err(e) => Err(e),
    }
}
