//! The request boundary: a panic inside one FUSE request must cost that request (EIO), not
//! the request thread. fuser runs a fixed number of threads; each panic used to kill one,
//! and after `n_threads` of them the mount stopped answering.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

/// Run `f`, turning a panic into `None` after logging it at error level with the op.
pub fn guarded<T>(op: &str, f: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(p) => {
            tracing::error!(
                op,
                "BUG: request panicked ({}); answered EIO, the mount keeps serving",
                message(&*p)
            );
            None
        }
    }
}

fn message(p: &(dyn Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "non-text payload"
    }
}

/// Send panic reports (with their location) to the log: a daemon's stderr is /dev/null.
pub fn log_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let thread = std::thread::current();
            tracing::error!(
                "panic in thread {}: {info}",
                thread.name().unwrap_or("unnamed")
            );
        }));
    });
}

/// Test hook, only in debug builds: a lookup of the name in `STRATA_TEST_PANIC_ON` panics,
/// so the tests can check that a panicking request answers EIO and the mount survives.
/// Release builds have no such hook.
#[cfg(debug_assertions)]
#[allow(clippy::panic)]
pub fn test_panic_point(name: &std::ffi::OsStr) {
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<std::ffi::OsString>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var_os("STRATA_TEST_PANIC_ON"));
    if target.as_deref() == Some(name) {
        panic!("STRATA_TEST_PANIC_ON: lookup of {name:?}");
    }
}

/// Release builds: no hook.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn test_panic_point(_name: &std::ffi::OsStr) {}
