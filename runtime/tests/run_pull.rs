//! `run --pull missing|always|never` against Debian's docker-registry on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod parity;
use parity::Env;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// docker-registry serving from `dir`, on a free port of 127.0.0.1; killed on drop.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "docker-registry is missing: run scripts/setup"
        );
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), cfg).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("registry.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("registry.err")).unwrap())
            .spawn()
            .unwrap();
        let r = Registry { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many manifest GETs the registry served (its access log).
fn manifest_gets(dir: &Path) -> usize {
    let mut text = std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
    text.push_str(&std::fs::read_to_string(dir.join("registry.err")).unwrap_or_default());
    text.lines()
        .filter(|l| l.contains("\"GET /v2/") && l.contains("/manifests/"))
        .count()
}

#[test]
fn pull_policies_of_run() {
    let src = Env::new("pullsrc");
    let regdir = src.dir.join("registry");
    let reg = Registry::start(&regdir);
    let image = format!("127.0.0.1:{}/parity/bb:1", reg.port);
    src.ok(&["push", "-q", "busybox", &image]);
    // A fresh store: never refuses what it does not have, and nothing is fetched.
    let e = Env::new("pulldst");
    let err = e.fails(&["run", "--rm", "--pull", "never", &image, "true"]);
    assert!(err.contains("no such image"), "{err}");
    assert_eq!(manifest_gets(&regdir), 0);
    // missing (the default): pulled once, then used from the store.
    assert_eq!(e.ok(&["run", "--rm", &image, "echo", "pulled"]), "pulled\n");
    let after_first = manifest_gets(&regdir);
    assert!(after_first >= 1);
    e.ok(&["run", "--rm", &image, "true"]);
    assert_eq!(manifest_gets(&regdir), after_first);
    // always: asks the registry again.
    e.ok(&["run", "--rm", "--pull", "always", &image, "true"]);
    assert!(manifest_gets(&regdir) > after_first);
    // A short name that is not in the store is not looked for anywhere.
    let err = e.fails(&["run", "--rm", "nosuchimage", "true"]);
    assert!(err.contains("no such image"), "{err}");
}
