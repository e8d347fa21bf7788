//! `strata build` layers: deleting and renaming lower files, and a small write into a big
//! base file staying a small layer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{busybox_store, check, fresh_dir, strata_at};
use std::path::Path;

fn du_kib(p: &Path) -> u64 {
    let out = std::process::Command::new("du")
        .arg("-sk")
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn build_file(store: &Path, ctx: &Path, text: &str, tag: &str) {
    build_with(store, ctx, text, tag, "auto")
}

fn build_with(store: &Path, ctx: &Path, text: &str, tag: &str, driver: &str) {
    std::fs::create_dir_all(ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), text).unwrap();
    let out = strata_at(
        store,
        &[
            "build",
            "--driver",
            driver,
            "-t",
            tag,
            ctx.to_str().unwrap(),
        ],
    );
    check(&out, "build");
}

#[test]
fn deletes_and_renames_of_lower_files() {
    let dir = fresh_dir("build-del");
    let store = busybox_store(&dir);
    build_file(
        &store,
        &dir.join("ctx"),
        "FROM busybox\nRUN mkdir /d && echo a > /d/a && echo b > /d/b && echo c > /c\n\
         RUN rm /d/a /c && mv /d/b /d/renamed && rm /etc/group\n",
        "del:1",
    );
    let run = strata_at(
        &store,
        &[
            "run",
            "--rm",
            "del:1",
            "sh",
            "-c",
            "ls /d; ls /c /etc/group 2>&1 | wc -l",
        ],
    );
    assert_eq!(check(&run, "run"), "renamed\n2\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_small_write_into_a_big_base_file_adds_a_small_layer() {
    let dir = fresh_dir("build-delta");
    let store = busybox_store(&dir);
    let base = "FROM busybox\nRUN dd if=/dev/urandom of=/big bs=1M count=64\n";
    build_with(&store, &dir.join("base"), base, "big:1", "fuse");
    let before = du_kib(&store);
    let step = "FROM big:1\nRUN dd if=/dev/zero of=/big bs=4096 count=1 seek=100 conv=notrunc\n";
    build_with(&store, &dir.join("ctx"), step, "big:2", "fuse");
    let after = du_kib(&store);
    assert!(
        after < before + 1024,
        "store grew {} KiB",
        after.saturating_sub(before)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
