//! `--restart`: the supervisor starts the command again when it exits, as docker's daemon
//! does: `on-failure[:N]` after a non-zero exit (at most N times), `always` and
//! `unless-stopped` after any exit; never after `strata stop`/`kill`. The delay doubles from
//! 100 ms up to a minute, and starts again at 100 ms once a run lasted 10 s.

use std::time::{Duration, Instant};

use crate::container::{self, ContainerConfig, Status};
use crate::spec::RestartPolicy;
use crate::store::Store;
use crate::util::{now_secs, Result};

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run this long resets the delay (docker's rule).
const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// Whether `policy` restarts a command that exited with `code` after `restarts` restarts.
pub fn should_restart(policy: &RestartPolicy, code: i32, restarts: u32) -> bool {
    match policy.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => code != 0 && (policy.max_retries == 0 || restarts < policy.max_retries),
        _ => false,
    }
}

/// Run `once` (one start of the command, its exit status and start error) until the
/// policy lets it end; the last result.
pub fn with_policy(
    store: &Store,
    cfg: &ContainerConfig,
    mut once: impl FnMut() -> Result<(i32, Option<String>)>,
) -> Result<(i32, Option<String>)> {
    let policy = &cfg.extras.restart;
    let mut delay = FIRST_DELAY;
    let mut restarts = 0;
    loop {
        let began = Instant::now();
        let result = once();
        let code = match &result {
            // Setup errors and commands that could not start are not retried.
            Ok((code, None)) => *code,
            _ => return result,
        };
        let stopping = container::load_state(store, &cfg.id).map_or(true, |s| s.stopping);
        if stopping || !should_restart(policy, code, restarts) {
            return result;
        }
        if began.elapsed() >= HEALTHY_RUN {
            delay = FIRST_DELAY;
        }
        restarts += 1;
        container::update_state(store, &cfg.id, |st| {
            st.status = Status::Exited;
            st.pid = None;
            st.pid_start = None;
            st.exit_code = Some(code);
            st.finished_at = Some(now_secs());
            st.restart_count = st.restart_count.saturating_add(1);
        })?;
        tracing::info!(
            "container {} exited with {code}: restarting in {delay:?}",
            cfg.name
        );
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if container::load_state(store, &cfg.id).map_or(true, |s| s.stopping) {
                return result;
            }
            std::thread::sleep(Duration::from_millis(50).min(delay));
        }
        delay = (delay * 2).min(MAX_DELAY);
    }
}
