//! Cleaning up after an interrupted command: Ctrl-C (SIGINT), SIGTERM or SIGHUP during a
//! pull, push, load, save, import or export removes what the command was staging (its
//! `store/tmp` directories, the hidden temporary file beside a `save -o` output), then
//! ends the process with 128 + the signal. What a crash (SIGKILL, power loss) leaves is
//! swept by the next [`crate::store::Store::open`]: staging whose owner process is gone.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{SigSet, Signal};

use crate::store::{remove_staging, Store};

/// The signal that interrupted the command, 0 while none has.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// Held by the cleaning thread from before it sets [`INTERRUPTED`] until it ends the
/// process: [`finish`] waits on it.
static CLEANING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// For the command's thread once [`interrupted`] says so: wait for the cleaning thread,
/// which ends the process when the staging is gone. Exiting at once instead raced the
/// clean-up: the command failed as soon as its staging was being removed, and its exit
/// could come before the removal was done (Ctrl-C during `load` left a `layer-*`
/// directory in tmp/ about once in ten runs).
pub fn finish(sig: i32) -> ! {
    let _wait = CLEANING.lock();
    std::process::exit(128 + sig)
}

/// The signal that interrupted the command, once one has. The command's own thread fails
/// when its staging is removed under it: its caller then exits with 128 + this signal
/// and no message, as the cleaning thread is about to.
pub fn interrupted() -> Option<i32> {
    Some(INTERRUPTED.load(Ordering::SeqCst)).filter(|s| *s != 0)
}

pub use crate::util::{remove_on_interrupt, Pending};

/// Handle SIGINT, SIGTERM and SIGHUP for the rest of the process by cleaning up and exiting.
/// Call before any thread is started: the signals are blocked here and every later thread
/// inherits the mask, so only the waiting thread receives them.
pub fn install(store: &Store) {
    let mut sigs = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        sigs.add(s);
    }
    if sigs.thread_block().is_err() {
        return;
    }
    let store = store.clone();
    let spawned = std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || loop {
            if let Ok(sig) = sigs.wait() {
                let _cleaning = CLEANING.lock();
                INTERRUPTED.store(sig as i32, Ordering::SeqCst);
                clean_up(&store);
                std::process::exit(128 + sig as i32);
            }
        });
    if spawned.is_err() {
        let _ = sigs.thread_unblock();
    }
}

/// Remove this process's staging and the registered paths. The command's own thread may
/// still be writing into them, so a directory is tried a few times.
fn clean_up(store: &Store) {
    // Kept until exit: the command's thread makes no staging directory after this sweep.
    let closed = crate::store::close_staging();
    let mine = crate::store::staging_owner_prefix();
    let mut paths: Vec<PathBuf> = crate::util::pending_paths();
    if let Ok(rd) = std::fs::read_dir(store.tmp_dir()) {
        for e in rd.flatten() {
            if crate::store::staging_owner(&e.file_name().to_string_lossy()) == Some(mine) {
                paths.push(e.path());
            }
        }
    }
    let mounts = crate::store::mounts_under(&store.tmp_dir());
    for p in paths {
        // The command's thread may still add entries until a removal pulls the directory
        // from under it: retry for up to a second.
        for _ in 0..50 {
            if remove_staging(&p, &mounts) || mounts.iter().any(|m| m.starts_with(&p)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    std::mem::forget(closed);
}
