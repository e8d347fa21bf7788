//! Ordinary test users, created once per machine and shared by the test files.

use std::process::Command;

/// Make sure the local user `name` exists (useradd without a home, shell /bin/sh); tests
/// running in parallel may race to create it, which useradd answers with exit code 9.
pub fn ensure_user(name: &str) {
    let known = Command::new("id")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success());
    if known {
        return;
    }
    let st = Command::new("useradd")
        .args(["-M", "-s", "/bin/sh", name])
        .status()
        .unwrap_or_else(|e| panic!("useradd {name}: {e} (is the passwd package installed?)"));
    assert!(
        st.success() || st.code() == Some(9),
        "useradd {name} failed"
    );
}
