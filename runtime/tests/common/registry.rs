//! Debian's docker-registry on 127.0.0.1 for the tests that push and pull.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A registry with a free port and its own storage under `dir`; killed on drop.
pub struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
    cfg: PathBuf,
}

impl Registry {
    /// Start one and wait (bounded) until it listens.
    pub fn start(dir: &Path) -> Registry {
        Registry::start_with_auth(dir, None)
    }

    /// As [`Registry::start`], behind basic auth from the `htpasswd` file when given.
    pub fn start_with_auth(dir: &Path, htpasswd: Option<&Path>) -> Registry {
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
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        if let Some(h) = htpasswd {
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                h.display()
            ));
        }
        let cfg_path = dir.join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = dir.join("registry.log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("registry.err")).unwrap())
            .spawn()
            .unwrap();
        let r = Registry {
            child,
            port,
            log,
            cfg: cfg_path,
        };
        r.wait_listening();
        r
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not listen on 127.0.0.1:{}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill it (the registry "goes away"); [`Registry::restart`] brings it back.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        let err = self.log.with_file_name("registry.err");
        self.child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&self.cfg)
            .stdin(Stdio::null())
            .stdout(
                std::fs::File::options()
                    .append(true)
                    .open(&self.log)
                    .unwrap(),
            )
            .stderr(std::fs::File::options().append(true).open(err).unwrap())
            .spawn()
            .unwrap();
        self.wait_listening();
    }

    /// host:port.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The blob GETs the registry has served so far (access log lines).
    pub fn blob_gets(&self) -> Vec<String> {
        let err = self.log.with_file_name("registry.err");
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(err).unwrap_or_default());
        text.lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
