//! The log of a detached container.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use crate::container::Paths;
use crate::err;
use crate::store::Store;
use crate::util::Result;

/// The log of a detached container.
pub fn log_path(store: &Store, id: &str) -> PathBuf {
    Paths::new(store, id).log()
}

/// Open the log for appending checks (used by `logs -f`).
pub fn open_log(store: &Store, id: &str) -> Result<Option<File>> {
    match OpenOptions::new().read(true).open(log_path(store, id)) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err!("cannot open the log: {e}")),
    }
}
