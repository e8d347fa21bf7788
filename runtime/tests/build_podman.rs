//! `strata build` against `podman build`: the same Dockerfile and context give the same
//! files (names, modes, owners, sizes, contents, symlinks) and run config; and strata's
//! result, saved, loads and runs in podman.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{busybox_store, check, fresh_dir, need, podman_in, strata_at};

const SNAPSHOT: &str = "find /app /data | sort | while read f; do \
    if [ -L \"$f\" ]; then echo \"$f -> $(readlink \"$f\")\"; \
    else stat -c '%n %a %u %g %F' \"$f\"; [ -f \"$f\" ] && md5sum < \"$f\"; fi; done";

const FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Labels",
];

/// podman run (SNAPSHOT as the argument of the images' `sh -c` entrypoint) with the
/// rlimits this machine lets runc set.
fn prun(dir: &std::path::Path, image: &str) -> std::process::Output {
    let args = [
        "run",
        "--rm",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        image,
        SNAPSHOT,
    ];
    podman_in(dir, &args)
}

#[test]
fn same_files_and_config_as_podman_build() {
    need("podman");
    let dir = fresh_dir("build-podman");
    let store = busybox_store(&dir);
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    std::fs::write(ctx.join("f.txt"), "file\n").unwrap();
    std::fs::write(ctx.join("sub/x"), "x\n").unwrap();
    std::os::unix::fs::symlink("x", ctx.join("sub/link")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nENV A=1 B=two\nWORKDIR /app\nCOPY f.txt ./\nCOPY sub /data/sub\n\
         RUN echo made > /app/made && chmod 0600 /app/made && ln -s made /app/l && rm /data/sub/x\n\
         USER 0:0\nEXPOSE 80 53/udp\nLABEL a=b\nENTRYPOINT [\"/bin/sh\", \"-c\"]\nCMD [\"true\"]\n",
    )
    .unwrap();
    let c = ctx.to_str().unwrap();
    check(
        &strata_at(&store, &["build", "-t", "localhost/sb:1", c]),
        "strata build",
    );
    // podman gets the same busybox base.
    let base = dir.join("base.tar");
    check(
        &strata_at(&store, &["save", "-o", base.to_str().unwrap(), "busybox"]),
        "save busybox",
    );
    check(
        &podman_in(&dir, &["load", "-q", "-i", base.to_str().unwrap()]),
        "podman load",
    );
    let pb = podman_in(
        &dir,
        &[
            "build",
            "--pull=never",
            "-t",
            "localhost/pb:1",
            "-f",
            &format!("{c}/Dockerfile"),
            c,
        ],
    );
    check(&pb, "podman build");
    let sview = check(
        &strata_at(&store, &["run", "--rm", "localhost/sb:1", SNAPSHOT]),
        "strata run",
    );
    let pview = check(&prun(&dir, "localhost/pb:1"), "podman run");
    assert_eq!(sview, pview);
    let sj: serde_json::Value = serde_json::from_str(&check(
        &strata_at(&store, &["image", "inspect", "localhost/sb:1"]),
        "inspect",
    ))
    .unwrap();
    let mut pj: serde_json::Value = serde_json::from_str(&check(
        &podman_in(&dir, &["image", "inspect", "localhost/pb:1"]),
        "inspect",
    ))
    .unwrap();
    // buildah labels its images with its version; the rest must match.
    if let Some(l) = pj[0]["Config"]["Labels"].as_object_mut() {
        l.remove("io.buildah.version");
    }
    for f in FIELDS {
        assert_eq!(sj[0]["Config"][f], pj[0]["Config"][f], "{f}");
    }
    // strata's result in podman.
    let out = dir.join("sb.tar");
    check(
        &strata_at(
            &store,
            &["save", "-o", out.to_str().unwrap(), "localhost/sb:1"],
        ),
        "save",
    );
    check(
        &podman_in(&dir, &["load", "-q", "-i", out.to_str().unwrap()]),
        "podman load result",
    );
    let lview = check(&prun(&dir, "localhost/sb:1"), "podman run result");
    assert_eq!(lview, sview);
    let _ = std::fs::remove_dir_all(&dir);
}
