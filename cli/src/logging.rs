//! Logging set-up: `tracing` to stderr in the foreground, to a file when daemonized.

use std::path::Path;
use tracing_subscriber::EnvFilter;

fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let f = EnvFilter::new(level);
        // fuser logs at ERROR every reply the kernel no longer waits for: a request its
        // caller interrupted (ENOENT) or one in flight when the connection ended at
        // unmount (ENODEV). Neither is a fault of the filesystem, and the request's outcome
        // was already decided; RUST_LOG=fuser::reply=error shows them again.
        match "fuser::reply=off".parse() {
            Ok(d) => f.add_directive(d),
            Err(_) => f,
        }
    })
}

/// Log to stderr at `level` unless RUST_LOG says otherwise.
pub fn init_stderr(level: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Log to `path` (appending); falls back to stderr if the file cannot be opened.
pub fn init_file(level: &str, path: &Path) {
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(file) => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter(level))
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .try_init();
        }
        Err(_) => init_stderr(level),
    }
}
