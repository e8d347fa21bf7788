//! Container records: a directory per container holding config.json (what to run),
//! state.json (what happened), the union's upper/work/merged directories and the log.

use serde::{Deserialize, Serialize};

use crate::isolation::rootless;
use crate::store::Store;
use crate::util::{read_json, write_json, Ctx, Result};

pub use crate::layer::plain::lower_dirs;
pub use crate::spec::*;
pub use crate::util::pid_start_time;

/// Lifecycle status.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, never started.
    Created,
    /// Its init is alive.
    Running,
    /// Stopped.
    Exited,
}

/// What happened to a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Lifecycle status.
    pub status: Status,
    /// Host pid of the container's init while running.
    pub pid: Option<i32>,
    /// Start time of that pid (clock ticks since boot) so a reused pid is not mistaken for it.
    pub pid_start: Option<u64>,
    /// Host pid of the supervising strata process.
    pub supervisor: Option<i32>,
    /// Start time of that pid, so a reused pid is not mistaken for a live supervisor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor_start: Option<u64>,
    /// Seconds since the epoch.
    pub started_at: Option<i64>,
    /// Seconds since the epoch.
    pub finished_at: Option<i64>,
    /// Exit status (128+N when killed by signal N).
    pub exit_code: Option<i32>,
    /// Set by `strata stop`/`kill` so the exit is not reported as a crash.
    #[serde(default)]
    pub stopping: bool,
    /// Error that stopped the container from starting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Times the restart policy started the command again.
    #[serde(default)]
    pub restart_count: u32,
}

impl State {
    /// The state of a created container.
    pub fn created() -> State {
        State {
            status: Status::Created,
            pid: None,
            pid_start: None,
            supervisor: None,
            supervisor_start: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            stopping: false,
            error: None,
            restart_count: 0,
        }
    }
}

/// Files of /etc the runtime binds over in every container.
pub const ETC_FILES: [&str; 3] = ["hosts", "resolv.conf", "hostname"];

/// Create the init layer of a container (idempotent).
pub fn make_init_layer(paths: &Paths) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let etc = paths.init_layer().join("etc");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&etc)
        .ctx(|| format!("cannot create {}", etc.display()))?;
    for f in ETC_FILES {
        let p = etc.join(f);
        if !p.exists() {
            std::fs::File::create(&p).ctx(|| format!("cannot create {}", p.display()))?;
        }
    }
    Ok(())
}

/// Load a container's state.
pub fn load_state(store: &Store, id: &str) -> Result<State> {
    read_json(&Paths::new(store, id).state())
}

/// Write a container's state atomically.
pub fn save_state(store: &Store, id: &str, st: &State) -> Result<()> {
    write_json(&Paths::new(store, id).state(), st)
}

/// Change a container's state under the exclusive store lock.
pub fn update_state(store: &Store, id: &str, f: impl FnOnce(&mut State)) -> Result<State> {
    let _lock = store.lock_exclusive()?;
    let mut st = load_state(store, id)?;
    f(&mut st);
    save_state(store, id, &st)?;
    Ok(st)
}

/// True while the recorded init process is alive (and is the same process).
pub fn init_alive(st: &State) -> bool {
    match (st.pid, st.pid_start) {
        (Some(pid), Some(start)) => pid_start_time(pid) == Some(start),
        _ => false,
    }
}

/// True while the supervising strata process is alive (and, when its start time was
/// recorded, is the same process).
pub fn supervisor_alive(st: &State) -> bool {
    st.supervisor.is_some_and(|p| match pid_start_time(p) {
        Some(start) => st.supervisor_start.is_none_or(|s| s == start),
        None => false,
    })
}

/// A name like docker's: adjective_noun from the id.
pub fn generate_name(id: &str) -> String {
    const A: [&str; 16] = [
        "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nimble", "proud", "quiet", "sharp", "tender", "witty",
    ];
    const N: [&str; 16] = [
        "otter", "lynx", "heron", "bison", "koala", "panda", "raven", "tapir", "yak", "zebra",
        "gecko", "ibis", "moose", "newt", "quail", "wombat",
    ];
    let b = id.as_bytes();
    let h = |i: usize| (b.get(i).copied().unwrap_or(b'0') as usize) % 16;
    format!("{}_{}_{}", A[h(0)], N[h(1)], id.get(2..6).unwrap_or("0000"))
}

/// Before a rootless command that works on container `id`'s files: join the namespaces of
/// its supervisor while it runs (its root is mounted there), else enter fresh ones.
pub fn enter_for_container(store: &Store, id: &str) -> Result<()> {
    let st = load_state(store, id)?;
    match st.supervisor {
        Some(pid)
            if st.status == Status::Running
                && supervisor_alive(&st)
                && rootless::other_userns(pid) =>
        {
            rootless::join(pid)
        }
        _ => rootless::enter_new(),
    }
}
