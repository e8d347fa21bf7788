//! `strata rename`: give a container a new unique name.

use crate::container::{self, Paths};
use crate::err;
use crate::store::Store;
use crate::util::{write_json, Result};

/// Rename container `id` to `new` (refused when another container has that name).
pub fn rename(store: &Store, id: &str, new: &str) -> Result<()> {
    let ok = !new.is_empty()
        && new
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(err!(
            "invalid container name {new:?}: use letters, digits and _ . -"
        ));
    }
    let _lock = store.lock_exclusive()?;
    if container::list_readable(store)?
        .iter()
        .any(|c| c.name == new && c.id != id)
    {
        return Err(err!(
            "the name {new} is already in use by another container: remove or rename it first"
        ));
    }
    let mut cfg = container::load_config(store, id)?;
    cfg.name = new.to_string();
    write_json(&Paths::new(store, id).config(), &cfg)
}
