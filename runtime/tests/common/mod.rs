//! Helpers shared by the runtime's end-to-end tests.
// Each test binary uses only some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The strata binary under test: STRATA_BIN, or the workspace's debug build.
pub fn strata_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_BIN") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/strata");
    assert!(
        p.exists(),
        "strata binary not found at {} (cargo build first, or set STRATA_BIN)",
        p.display()
    );
    p
}

/// The host's busybox (Debian's busybox-static), the source of every test image.
pub fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox is missing: run scripts/setup (or apt-get install -y busybox-static)");
}
