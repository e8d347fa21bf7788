//! Lazy pulling of eStargz images: `push --format estargz`, then `run` on a fresh store
//! starts the container from the TOC alone and fetches files by range requests on first
//! read, each chunk verified; a corrupted chunk or a registry gone away is EIO, never bad
//! bytes or a hang; `pull` completes the cache; the image stays a plain gzip image for
//! podman and for a normal pull. Real registry on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::registry::Registry;
use common::store_env::StoreEnv;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIG: usize = 24 << 20;

/// A store with image `lz`: busybox, /data/small.txt, and /data/big.bin (24 MB of
/// pseudo-random bytes, incompressible); pushed as eStargz to a fresh registry.
struct Setup {
    src: StoreEnv,
    reg: Registry,
    image: String,
    big_md5: String,
}

fn setup(tag: &str) -> Setup {
    let src = StoreEnv::bare(tag);
    src.write_rootfs("data/small.txt", "hello-lazy\n");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut big = Vec::with_capacity(BIG);
    while big.len() < BIG {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(src.rootfs().join("data/big.bin"), &big).unwrap();
    let big_md5 = md5(&src.rootfs().join("data/big.bin"));
    src.import_rootfs("lz", &[r#"CMD ["/bin/sh"]"#]);
    let reg = Registry::start(&src.path("registry"));
    let image = format!("{}/lazy/lz:1", reg.host());
    src.ok(&["push", "-q", "--format", "estargz", "lz", &image]);
    Setup {
        src,
        reg,
        image,
        big_md5,
    }
}

fn md5(p: &Path) -> String {
    let out = Command::new("md5sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// `strata ARGS` on `env`'s store without background prefetch (so the registry log shows
/// what the container's reads fetched) and with `deadline` seconds for a fetch.
fn lazy_cmd(env: &StoreEnv, deadline: &str, args: &[&str]) -> Output {
    env.cmd(args)
        .env("STRATA_LAZY_PREFETCH", "0")
        .env("STRATA_LAZY_DEADLINE", deadline)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Bytes the registry sent for blob GETs (the access log's size field).
fn blob_bytes(reg: &Registry) -> u64 {
    reg.blob_gets()
        .iter()
        .filter_map(|l| {
            let after = l.split("HTTP/1.1\" ").nth(1)?;
            after.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

/// The registry's file for blob `digest`.
fn blob_file(reg_dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    reg_dir.join(format!(
        "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ))
}

/// The one layer's lazy records in `env`'s store: (state, toc).
fn lazy_records(env: &StoreEnv) -> (serde_json::Value, serde_json::Value) {
    let layers = env.root().join("layers");
    for e in std::fs::read_dir(&layers).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(hex) = name.strip_suffix(".lazy.json") {
            let state = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            let toc = serde_json::from_slice(
                &std::fs::read(layers.join(format!("{hex}.toc.json"))).unwrap(),
            )
            .unwrap();
            return (state, toc);
        }
    }
    panic!("no lazy layer in {}", layers.display());
}

/// Every strata daemon log line of the store's containers.
fn daemon_logs(env: &StoreEnv) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find {} -name strata.log -exec cat {{}} +",
            env.root().display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn lazy_run_starts_from_the_toc_and_fetches_little() {
    let s = setup("lazy-run");
    let blob_size = {
        let dst = StoreEnv::bare("lazy-run-dst");
        let before = blob_bytes(&s.reg);
        let out = lazy_cmd(
            &dst,
            "20",
            &["run", "--rm", &s.image, "cat", "/data/small.txt"],
        );
        let text = common::expect_ok(&["run"], out);
        assert_eq!(text, "hello-lazy\n");
        let fetched = blob_bytes(&s.reg) - before;
        let (state, _) = lazy_records(&dst);
        let size = state["size"].as_u64().unwrap();
        // The TOC, busybox and the small file: far less than the 24 MB file beside them.
        assert!(
            fetched * 10 < size,
            "fetched {fetched} bytes of a {size}-byte layer before the first output"
        );
        let digest = state["digest"].as_str().unwrap();
        assert!(
            !s.reg
                .blob_gets()
                .iter()
                .any(|l| l.contains(digest) && l.contains("HTTP/1.1\" 200 ")),
            "the layer blob was downloaded whole: {:?}",
            s.reg.blob_gets()
        );
        // The big file, read lazily, is the real one.
        let out = lazy_cmd(
            &dst,
            "20",
            &["run", "--rm", &s.image, "md5sum", "/data/big.bin"],
        );
        let text = common::expect_ok(&["run md5sum"], out);
        assert!(text.starts_with(&s.big_md5), "{text} vs {}", s.big_md5);
        // A plain pull completes the layer: the kernel overlay (which cannot fetch) runs it.
        dst.ok(&["pull", "-q", &s.image]);
        let text = dst.ok(&[
            "run",
            "--rm",
            "--driver",
            "overlay",
            &s.image,
            "cat",
            "/data/small.txt",
        ]);
        assert_eq!(text, "hello-lazy\n");
        size
    };
    assert!(blob_size > BIG as u64);
}

#[test]
fn corrupted_chunk_is_eio_not_bad_bytes() {
    let s = setup("lazy-corrupt");
    let dst = StoreEnv::bare("lazy-corrupt-dst");
    common::expect_ok(
        &["pull"],
        lazy_cmd(&dst, "5", &["pull", "-q", "--lazy", &s.image]),
    );
    let (state, toc) = lazy_records(&dst);
    let entry = toc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str().unwrap().ends_with("data/small.txt"))
        .unwrap();
    let off = entry["offset"].as_u64().unwrap();
    // Flip a byte of the deflate data in the file's gzip member, in the registry's storage.
    let blob = blob_file(&s.src.path("registry"), state["digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[off as usize + 12] ^= 0x55;
    std::fs::write(&blob, &bytes).unwrap();
    // Not --rm: the container's directory keeps its union daemon's log.
    let out = lazy_cmd(&dst, "5", &["run", &s.image, "cat", "/data/small.txt"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "read a corrupted chunk: {stdout:?}");
    assert!(!stdout.contains("hello"), "{stdout:?}");
    assert!(stderr.contains("Input/output error"), "{stderr}");
    let logs = daemon_logs(&dst);
    assert!(
        logs.contains("cannot fetch data/small.txt") && logs.contains("lazy layer sha256:"),
        "{logs}"
    );
}

#[test]
fn registry_gone_is_eio_within_the_deadline_and_pull_completes() {
    let mut s = setup("lazy-gone");
    let dst = StoreEnv::bare("lazy-gone-dst");
    common::expect_ok(
        &["pull"],
        lazy_cmd(&dst, "3", &["pull", "-q", "--lazy", &s.image]),
    );
    // The container reads a file, then the registry goes away, then it reads another.
    let out = lazy_cmd(
        &dst,
        "3",
        &[
            "run",
            "-d",
            "--name",
            "m",
            &s.image,
            "sh",
            "-c",
            "cat /data/small.txt; sleep 2; md5sum /data/big.bin || echo FAILED",
        ],
    );
    common::expect_ok(&["run -d"], out);
    let logs = || dst.strata(&["logs", "m"]);
    common::poll("the first output", || {
        String::from_utf8_lossy(&logs().stdout).contains("hello-lazy")
    });
    s.reg.stop();
    let t = Instant::now();
    common::poll("the failed read", || {
        String::from_utf8_lossy(&logs().stdout).contains("FAILED")
    });
    let took = t.elapsed();
    let out = logs();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Input/output error"), "{stderr}");
    assert!(took < Duration::from_secs(12), "took {took:?}");
    let daemon = daemon_logs(&dst);
    assert!(
        daemon.contains("cannot fetch data/big.bin") && daemon.contains("gave up after"),
        "{daemon}"
    );
    dst.ok(&["rm", "-f", "m"]);
    // Back again: `strata pull` completes the cache, and nothing is fetched afterwards.
    s.reg.restart();
    dst.ok(&["pull", "-q", &s.image]);
    s.reg.stop();
    let text = dst.ok(&["run", "--rm", &s.image, "md5sum", "/data/big.bin"]);
    assert!(text.starts_with(&s.big_md5), "{text}");
}

#[test]
fn estargz_image_is_a_plain_gzip_image_to_others() {
    let s = setup("lazy-plain");
    // strata's normal pull (no --lazy): the whole blob, diff_id checked, kernel overlay.
    let dst = StoreEnv::bare("lazy-plain-dst");
    dst.ok(&["pull", "-q", &s.image]);
    let text = dst.ok(&[
        "run",
        "--rm",
        "--driver",
        "overlay",
        &s.image,
        "md5sum",
        "/data/big.bin",
    ]);
    assert!(text.starts_with(&s.big_md5), "{text}");
    common::need("podman");
    let out = common::podman_in(&dst.dir, &["pull", "-q", "--tls-verify=false", &s.image]);
    common::check(&out, "podman pull");
    let out = common::podman_in(
        &dst.dir,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            // The rlimits this machine lets runc set.
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            &s.image,
            "cat",
            "/data/small.txt",
        ],
    );
    assert_eq!(common::check(&out, "podman run"), "hello-lazy\n");
}

#[test]
fn tampered_toc_is_refused_before_anything_is_laid_out() {
    let s = setup("lazy-toc");
    // The layer blob: the one the registry holds that ends in an eStargz footer.
    let blobs = s.src.path("registry/data/docker/registry/v2/blobs/sha256");
    let mut layer = None;
    for e in walk(&blobs) {
        let b = std::fs::read(&e).unwrap();
        if b.len() > 51 && &b[b.len() - 19..b.len() - 13] == b"STARGZ" {
            layer = Some((e, b));
        }
    }
    let (path, mut bytes) = layer.expect("no eStargz blob in the registry");
    let foot = bytes.len() - 51;
    let toc_off = usize::from_str_radix(
        std::str::from_utf8(&bytes[foot + 16..foot + 32]).unwrap(),
        16,
    )
    .unwrap();
    // Flip a byte inside the TOC's deflate data.
    bytes[toc_off + (foot - toc_off) / 2] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let dst = StoreEnv::bare("lazy-toc-dst");
    let out = lazy_cmd(&dst, "5", &["pull", "-q", "--lazy", &s.image]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TOC"), "{stderr}");
    let layers: Vec<_> = std::fs::read_dir(dst.root().join("layers"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(layers.is_empty(), "{layers:?}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn background_download_completes_the_layer_while_the_container_runs() {
    let mut s = setup("lazy-bg");
    let dst = StoreEnv::bare("lazy-bg-dst");
    common::expect_ok(
        &["pull"],
        lazy_cmd(&dst, "5", &["pull", "-q", "--lazy", &s.image]),
    );
    // Kernel overlayfs would read placeholders: refused while the layer is lazy.
    let err = dst.fails(&["run", "--rm", "--driver", "overlay", &s.image, "true"]);
    assert!(err.contains("lazily pulled"), "{err}");
    let out = dst
        .cmd(&[
            "run",
            "-d",
            "--name",
            "bg",
            &s.image,
            "sh",
            "-c",
            "cat /data/small.txt; sleep 60",
        ])
        .env("STRATA_LAZY_PREFETCH_DELAY", "0.2")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    common::expect_ok(&["run -d"], out);
    let records = || {
        std::fs::read_dir(dst.root().join("layers"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".lazy.json"))
    };
    common::poll("the background download", || !records());
    dst.ok(&["rm", "-f", "bg"]);
    // Complete and verified: runs with the registry gone, on the kernel overlay too.
    s.reg.stop();
    let text = dst.ok(&[
        "run",
        "--rm",
        "--driver",
        "overlay",
        &s.image,
        "md5sum",
        "/data/big.bin",
    ]);
    assert!(text.starts_with(&s.big_md5), "{text}");
}
