//! `strata wait`: block until a container exits and return its exit status.

use std::time::Duration;

use crate::container::{self, Status};
use crate::err;
use crate::store::Store;
use crate::util::Result;

/// Wait (polling its record every 50 ms) until container `id` has exited, for as long as
/// it takes, as docker does; its exit status.
pub fn wait(store: &Store, id: &str) -> Result<i32> {
    let mut started = false;
    // Polls that found the record half removed (a --rm container's directory emptied
    // while we read it); bounded so that a record broken otherwise still fails.
    let mut half_removed = 0;
    loop {
        let paths = container::Paths::new(store, id);
        let st = match container::reconcile(store, id) {
            Ok(st) => st,
            // Removed meanwhile (--rm): the record is gone, its die event keeps the status.
            Err(_) if !paths.dir.exists() => {
                return died_with(store, id).ok_or_else(|| {
                    err!("container {id} was removed before its exit status could be read")
                })
            }
            Err(_) if !paths.state().exists() && half_removed < 100 => {
                half_removed += 1;
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => return Err(e),
        };
        match st.status {
            Status::Exited if started || st.exit_code.is_some() => {
                return Ok(st.exit_code.unwrap_or(0))
            }
            Status::Running => started = true,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The exit status in the last `die` event of container `id`.
fn died_with(store: &Store, id: &str) -> Option<i32> {
    let (events, _) = super::events::read_from(store, None);
    events
        .iter()
        .rev()
        .find(|e| e.id == id && e.action == "die")
        .and_then(|e| e.actor.attributes.get("exitCode")?.parse().ok())
}
