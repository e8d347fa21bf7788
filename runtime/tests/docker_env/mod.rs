//! A private store with a busybox image, for the tests of docker's commands and formats.
#![allow(dead_code)]

use std::process::Command;

#[path = "../common/mod.rs"]
mod common;
#[allow(unused_imports)]
pub use common::{have, install_busybox, need, poll, strata_bin};

/// A store under a fresh temporary directory with `busybox` imported (CMD /bin/sh).
pub use common::store_env::StoreEnv as Env;

/// Debian's docker-registry on 127.0.0.1 (a free port), behind htpasswd basic auth for one
/// user (`user`, `pass`), with its storage in `dir`; killed on drop.
pub fn auth_registry(dir: &std::path::Path, user: &str, pass: &str) -> common::registry::Registry {
    std::fs::create_dir_all(dir).unwrap();
    let h = Command::new("htpasswd")
        .args(["-Bbn", user, pass])
        .output()
        .unwrap();
    assert!(h.status.success());
    std::fs::write(dir.join("htpasswd"), &h.stdout).unwrap();
    common::registry::Registry::start_with_auth(dir, Some(&dir.join("htpasswd")))
}
