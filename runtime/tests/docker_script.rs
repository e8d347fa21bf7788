//! A shell script written for docker (runtime/tests/scripts/docker_script.sh: `ps --format
//! '{{.Names}}'`, `inspect --format '{{.State.ExitCode}}'`, `run --rm=true`, `logs --tail 1`,
//! `cp`, `wait`) runs unchanged with DOCKER=strata. Real containers. Rootful.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod docker_env;
use docker_env::Env;
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn a_docker_script_runs_unchanged() {
    let e = Env::new("script");
    let bin = e.wrapper_bin();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/docker_script.sh");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("timeout")
        .arg("120")
        .arg("sh")
        .arg(&script)
        .env("DOCKER", "strata")
        .env("IMAGE", "busybox")
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.ends_with("OK\n"),
        "the docker script failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
