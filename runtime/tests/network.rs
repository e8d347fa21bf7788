//! Container networking (issue 17), for real: bridges, veths, nftables rules and pasta on
//! this machine. Traffic goes only between containers a test started and to ports it
//! published on 127.0.0.1; no name is looked up outside the containers' /etc/hosts.
//! Every wait is bounded in count and time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::store_env::StoreEnv;
use common::{as_user, ensure_user};

/// A private store with a busybox image (`busybox`, plus /bin/udpecho) and, once asked,
/// a user network of its own.
struct Env(StoreEnv);

impl std::ops::Deref for Env {
    type Target = StoreEnv;
    fn deref(&self) -> &StoreEnv {
        &self.0
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A UDP server answering each datagram with "got " + it.
const UDPECHO: &str = r#"
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_port = htons(atoi(argv[1]));
    if (bind(s, (struct sockaddr *)&a, sizeof a)) return 1;
    for (;;) {
        char buf[512] = "got "; struct sockaddr_in p; socklen_t l = sizeof p;
        ssize_t n = recvfrom(s, buf + 4, sizeof buf - 4, 0, (struct sockaddr *)&p, &l);
        if (n > 0) sendto(s, buf, n + 4, 0, (struct sockaddr *)&p, l);
    }
}
"#;

impl Env {
    fn new() -> Env {
        let env = StoreEnv::bare("net");
        env.write_rootfs("srv/index.html", "served\n");
        let src = env.path("udpecho.c");
        std::fs::write(&src, UDPECHO).unwrap();
        let cc = Command::new("cc")
            .args(["-static", "-O", "-o"])
            .arg(env.rootfs().join("bin/udpecho"))
            .arg(&src)
            .status()
            .unwrap();
        assert!(cc.success(), "cc failed");
        env.import_rootfs("busybox", &[r#"CMD ["/bin/sh"]"#, "EXPOSE 80"]);
        Env(env)
    }

    /// This store's network record `name`, as JSON.
    fn network(&self, name: &str) -> serde_json::Value {
        let p = self.dir.join(format!("store/networks/{name}.json"));
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    /// A network name unique to this test run.
    fn net_name(&self, what: &str) -> String {
        format!(
            "{what}{}",
            COUNTER.fetch_add(1, Ordering::SeqCst) + 100 * (std::process::id() as usize % 1000)
        )
    }
}

/// A port that is free on 127.0.0.1 now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET / on 127.0.0.1:port, retried (at most 100 times, 10 s) until a server answers.
fn http_get(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    for _ in 0..100 {
        let addr = ("127.0.0.1", port);
        if let Ok(mut s) = TcpStream::connect(addr) {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut out = String::new();
            if s.read_to_string(&mut out).is_ok() && !out.is_empty() {
                return out;
            }
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing answered on 127.0.0.1:{port}");
}

fn ip_links() -> String {
    String::from_utf8(
        Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

fn ruleset() -> String {
    String::from_utf8(
        Command::new("nft")
            .args(["list", "ruleset"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

/// An httpd serving its hostname, published on host port `port` of 127.0.0.1.
fn web(e: &Env, name: &str, port: u16) -> String {
    let p = format!("127.0.0.1:{port}:80");
    e.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "-h",
        name,
        "-p",
        &p,
        "busybox",
        "sh",
        "-c",
        "hostname > /srv/index.html; exec httpd -f -p 80 -h /srv",
    ])
    .trim()
    .to_string()
}

#[test]
fn the_same_container_port_published_twice_answers_from_the_host() {
    let e = Env::new();
    let (p1, p2) = (free_port(), free_port());
    web(&e, "web1", p1);
    web(&e, "web2", p2);
    assert!(http_get(p1).ends_with("web1\n"));
    assert!(http_get(p2).ends_with("web2\n"));
    let ps = e.ok(&["ps"]);
    assert!(ps.contains(&format!("127.0.0.1:{p1}->80/tcp")), "{ps}");
    assert_eq!(
        e.ok(&["port", "web2"]),
        format!("80/tcp -> 127.0.0.1:{p2}\n")
    );
    // -P: the image's EXPOSE 80 on a free host port.
    e.ok(&[
        "run", "-d", "--name", "all", "-P", "busybox", "httpd", "-f", "-p", "80", "-h", "/srv",
    ]);
    let line = e.ok(&["port", "all", "80"]);
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!(http_get(port).ends_with("served\n"));
    // A host port already published is refused, and nothing is created.
    let out = e.strata(&[
        "run",
        "-d",
        "-p",
        &format!("127.0.0.1:{p1}:80"),
        "busybox",
        "true",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already published"));
}

#[test]
fn names_resolve_on_a_user_network_and_networks_are_isolated() {
    let e = Env::new();
    let net = e.net_name("app");
    e.ok(&["network", "create", &net]);
    assert!(e.ok(&["network", "ls"]).contains(&net));
    e.ok(&[
        "run",
        "-d",
        "--network",
        &net,
        "--name",
        "db",
        "busybox",
        "nc",
        "-ll",
        "-p",
        "5000",
        "-e",
        "cat",
    ]);
    let db_ip = e.network(&net)["members"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    // By name, from the same network (a few tries: db may still be starting).
    let mut answered = String::new();
    for _ in 0..20 {
        answered = e.ok(&[
            "run",
            "--rm",
            "--network",
            &net,
            "busybox",
            "sh",
            "-c",
            "echo hi | nc -w2 db 5000",
        ]);
        if answered == "hi\n" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(answered, "hi\n");
    // From the default network, db's address is not reachable.
    let out = e.strata(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        &format!("echo hi | nc -w1 {db_ip} 5000"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "another network reached db"
    );
    // --network none: loopback only.
    assert_eq!(
        e.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "ls",
            "/sys/class/net"
        ]),
        "lo\n"
    );
    // A network in use is not removed; once empty it is.
    assert!(!e.strata(&["network", "rm", &net]).status.success());
    e.ok(&["rm", "-f", "db"]);
    e.ok(&["network", "rm", &net]);
    assert!(!e.ok(&["network", "ls"]).contains(&net));
}

#[test]
fn container_mode_shares_the_other_containers_stack() {
    let e = Env::new();
    let port = free_port();
    web(&e, "host1", port);
    http_get(port);
    let out = e.ok(&[
        "run",
        "--rm",
        "--network",
        "container:host1",
        "busybox",
        "wget",
        "-qO-",
        "127.0.0.1:80",
    ]);
    assert_eq!(out, "host1\n");
}

#[test]
fn udp_is_published() {
    let e = Env::new();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = format!("127.0.0.1:{port}:7000/udp");
    e.ok(&[
        "run", "-d", "--name", "echo", "-p", &p, "busybox", "udpecho", "7000",
    ]);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    let mut got = String::new();
    for _ in 0..50 {
        s.send_to(b"ping", ("127.0.0.1", port)).unwrap();
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            got = String::from_utf8_lossy(&buf[..n]).into_owned();
            break;
        }
    }
    assert_eq!(got, "got ping");
}

#[test]
fn stop_and_start_keep_the_address() {
    let e = Env::new();
    let id = e.ok(&["run", "-d", "--name", "keep", "busybox", "sleep", "1000"]);
    let id = id.trim();
    let ip = e.network("bridge")["members"][id]
        .as_str()
        .unwrap()
        .to_string();
    let shown = e.ok(&["exec", "keep", "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(shown.contains(&format!("{ip}/")), "{shown}");
    e.ok(&["stop", "-t", "1", "keep"]);
    e.ok(&["start", "keep"]);
    let shown = e.ok(&["exec", "keep", "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(shown.contains(&format!("{ip}/")), "{shown}");
}

#[test]
fn a_killed_supervisor_leaves_no_interface_rule_or_address() {
    let e = Env::new();
    let port = free_port();
    let id = web(&e, "doomed", port);
    http_get(port);
    let bridge = e.network("bridge")["bridge"].as_str().unwrap().to_string();
    let veth = format!("st{}0", &id[..12]);
    assert!(ip_links().contains(&veth));
    assert!(ruleset().contains(&id));
    let st: serde_json::Value = serde_json::from_slice(
        &std::fs::read(e.dir.join(format!("store/containers/{id}/state.json"))).unwrap(),
    )
    .unwrap();
    let sup = st["supervisor"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup), nix::sys::signal::SIGKILL).unwrap();
    // The namespace dies with init (pdeathsig), taking the veth pair with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ip_links().contains(&veth) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    e.ok(&["ps", "-a"]);
    assert!(
        !ip_links().contains(&veth),
        "the veth outlived its container"
    );
    assert!(
        !ruleset().contains(&id),
        "the port rules outlived the supervisor"
    );
    e.ok(&["rm", "doomed"]);
    // The allocator gave the address back; the empty default network is gone altogether.
    assert!(!e.dir.join("store/networks/bridge.json").exists());
    assert!(
        !ip_links().contains(&format!(" {bridge}:")),
        "the empty network's bridge is left"
    );
}

#[test]
fn twenty_containers_started_and_removed_in_parallel_leak_nothing() {
    let e = Env::new();
    // One container stays: the network (bridge, rules) must survive the others.
    let keep = e.ok(&["run", "-d", "--name", "stay", "busybox", "sleep", "1000"]);
    let ids: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..20)
            .map(|i| {
                let e = &e;
                s.spawn(move || {
                    let name = format!("p{i}");
                    let id = e.ok(&[
                        "run",
                        "-d",
                        "--name",
                        &name,
                        "-p",
                        "127.0.0.1::80",
                        "busybox",
                        "sleep",
                        "1000",
                    ]);
                    e.ok(&["rm", "-f", &name]);
                    id.trim().to_string()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // The kernel destroys each veth pair with its namespace, asynchronously.
    let leaked = |links: &str| {
        ids.iter()
            .any(|id| links.contains(&format!("st{}", &id[..12])))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while leaked(&ip_links()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let links = ip_links();
    let rules = ruleset();
    for id in &ids {
        assert!(
            !links.contains(&format!("st{}", &id[..12])),
            "veth of {id} leaked"
        );
        assert!(!rules.contains(id.as_str()), "rules of {id} leaked");
    }
    let members = e.network("bridge")["members"].as_object().unwrap().clone();
    assert_eq!(members.keys().collect::<Vec<_>>(), vec![keep.trim()]);
    let out = e.ok(&[
        "exec",
        "stay",
        "ping",
        "-c1",
        "-W2",
        e.network("bridge")["gateway"].as_str().unwrap(),
    ]);
    assert!(out.contains("1 packets received"), "{out}");
}

#[test]
fn rootless_containers_publish_ports_through_pasta() {
    let e = Env::new();
    let user = "strata-rootless";
    ensure_user(user);
    // As distributions ship them.
    common::rootless_devices();
    let home = e.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::copy(e.dir.join("busybox.tar"), home.join("busybox.tar")).unwrap();
    let st = Command::new("chown")
        .args(["-R", &format!("{user}:{user}")])
        .arg(&home)
        .status()
        .unwrap();
    assert!(st.success());
    let u = |args: &[&str]| as_user(user, &home, args);
    let tar = home.join("busybox.tar");
    let (code, _, err) = u(&["import", tar.to_str().unwrap(), "busybox"]);
    assert_eq!(code, 0, "{err}");
    let (_, info, _) = u(&["info"]);
    assert!(info.contains("Networking: pasta"), "{info}");
    let port = free_port();
    let p = format!("127.0.0.1:{port}:80");
    let (code, _, err) = u(&[
        "run", "-d", "--name", "rweb", "-p", &p, "busybox", "httpd", "-f", "-p", "80", "-h", "/srv",
    ]);
    assert_eq!(code, 0, "{err}");
    let got = http_get(port);
    let (_, ports, _) = u(&["port", "rweb"]);
    let _ = u(&["rm", "-f", "rweb"]);
    assert!(got.ends_with("served\n"), "{got}");
    assert_eq!(ports, format!("80/tcp -> 127.0.0.1:{port}\n"));
}
