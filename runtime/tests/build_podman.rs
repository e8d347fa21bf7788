//! `strata build` against `podman build`: the same Dockerfile and context give the same
//! files (names, modes, owners, sizes, contents, symlinks) and run config; and strata's
//! result, saved, loads and runs in podman.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{busybox_store, check, fresh_dir, need, podman_in, strata_at};

const SNAPSHOT: &str = "find /app /data /tmp | sort | while read f; do \
    if [ -L \"$f\" ]; then echo \"$f -> $(readlink \"$f\")\"; \
    else stat -c '%n %a %u %g %F' \"$f\"; [ -f \"$f\" ] && md5sum < \"$f\"; fi; done; true";

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

/// Build `ctx` (its Dockerfile ends in `ENTRYPOINT ["/bin/sh", "-c"]`) with strata and
/// with podman from the same busybox base: same files and config; strata's result runs the
/// same in podman.
fn same_as_podman(dir: &std::path::Path, store: &std::path::Path, ctx: &std::path::Path) {
    let store = store.to_path_buf();
    let c = ctx.to_str().unwrap();
    check(
        &strata_at(&store, &["build", "-t", "localhost/sb:1", c]),
        "strata build",
    );
    // podman gets the same busybox base.
    let base = dir.join("base.tar");
    let dir = dir.to_path_buf();
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
    same_as_podman(&dir, &store, &ctx);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Wildcards, --chown/--chmod, ADD of a local archive and of a file that only looks like
/// one, missing parents of a destination, and a special directory (/tmp) on the way.
#[test]
fn copy_forms_match_podman_build() {
    need("podman");
    let dir = fresh_dir("build-podman-copy");
    let store = busybox_store(&dir);
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join("tree/t/in")).unwrap();
    std::fs::write(dir.join("tree/t/in/f"), "packed\n").unwrap();
    for f in ["a.txt", "b.txt", "c.log", "sub/d.txt"] {
        std::fs::write(ctx.join(f), f).unwrap();
    }
    std::fs::write(ctx.join("fake.tar"), "not a tar\n").unwrap();
    let tar = std::process::Command::new("tar")
        .args(["--owner=7", "--group=8", "-czf"])
        .arg(ctx.join("arch.tar.gz"))
        .arg("-C")
        .arg(dir.join("tree"))
        .arg("t")
        .output()
        .unwrap();
    assert!(tar.status.success());
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\n\
         RUN mkdir -p /data && chmod 1777 /tmp && chown 5:6 /tmp && \
           echo 'app:x:1000:1000::/:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group\n\
         COPY *.txt /app/txt/\n\
         COPY s?b/*.txt [ab].txt /app/deep/\n\
         COPY --chown=app:app --chmod=0600 a.txt /app/owned\n\
         COPY --chown=7:8 sub /data/sub\n\
         RUN mkdir -p /data/exist && chmod 750 /data/exist\n\
         COPY --chown=7:8 sub /data/exist\n\
         COPY --chown=7:8 a.txt /data/f1/f2/a\n\
         COPY --chown=7:8 a.txt b.txt /data/m1/m2/\n\
         ADD arch.tar.gz /data/x/\n\
         ADD fake.tar /data/\n\
         COPY a.txt /data/new/parent/a\n\
         COPY c.log /tmp/t/c\n\
         ENTRYPOINT [\"/bin/sh\", \"-c\"]\n",
    )
    .unwrap();
    same_as_podman(&dir, &store, &ctx);
    let _ = std::fs::remove_dir_all(&dir);
}
