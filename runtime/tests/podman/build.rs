//! `podman build` of a Containerfile with several RUN steps, rootful and rootless.

use crate::harness::{Podman, CTR};
use crate::tars::{assert_tar_file, file, saved_layers, tar_entries};
use std::collections::BTreeSet;

/// The Containerfile of the build tests: create, delete a base file, rename, chown, write.
const CONTAINERFILE: &str = "FROM localhost/base:latest
RUN mkdir /built && echo one > /built/one && echo gone > /built/gone && echo keep > /built/keep
RUN rm /built/gone /data/del && mv /built/one /built/renamed && mv /data/sub /data/moved
RUN mkdir /built/d && echo in > /built/d/f && chown -R 1234:2345 /built/d && chmod 0640 /built/d/f
RUN echo two >> /built/renamed && echo more >> /data/keep && chown 7:8 /data/owned
";

const BUILT_CHECK: &str = "stat -c '%u:%g %a %n' /built /built/keep /built/renamed /built/d /built/d/f /data/keep /data/owned /data/moved/deep
cat /built/renamed /built/d/f /data/keep
ls /built; ls /data";

const BUILT_OUT: &str = "0:0 755 /built
0:0 644 /built/keep
0:0 644 /built/renamed
1234:2345 755 /built/d
1234:2345 640 /built/d/f
0:0 644 /data/keep
7:8 644 /data/owned
0:0 644 /data/moved/deep
one
two
in
keep
more
d
keep
renamed
keep
moved
owned
";

/// `podman build` of [`CONTAINERFILE`] with `opts`: the image runs with the right tree,
/// each RUN step's layer holds what it changed, and the export has content and owners.
fn build(p: &Podman, opts: &[&str]) {
    p.import_base();
    let ctx = p.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Containerfile"), CONTAINERFILE).unwrap();
    let mut args = vec!["build", "-q", "--pull=never", "--network", "none"];
    args.extend(opts);
    args.extend(["-t", "localhost/built", ctx.to_str().unwrap()]);
    p.ok(&args);

    let run = [
        "run",
        "--rm",
        "--pull=never",
        "localhost/built",
        "sh",
        "-c",
        BUILT_CHECK,
    ];
    assert_eq!(p.ok(&run), BUILT_OUT, "the built image");

    let saved = p.path("home/built.tar");
    p.ok(&[
        "save",
        "-q",
        "-o",
        saved.to_str().unwrap(),
        "localhost/built",
    ]);
    let layers = saved_layers(&saved);
    assert_eq!(layers.len(), 5, "the base and one layer per RUN step");
    let keys = |i: usize| -> BTreeSet<String> {
        layers[i]
            .keys()
            .filter(|k| k.starts_with("built") || k.starts_with("data"))
            .cloned()
            .collect()
    };
    let set = |v: &[&str]| -> BTreeSet<String> { v.iter().map(|s| s.to_string()).collect() };
    assert_eq!(
        keys(1),
        set(&["built", "built/gone", "built/keep", "built/one"])
    );
    assert_eq!(
        keys(2),
        set(&[
            "built",
            "built/.wh.gone",
            "built/.wh.one",
            "built/renamed",
            "data",
            "data/.wh.del",
            "data/.wh.sub",
            "data/moved",
            "data/moved/deep",
        ])
    );
    assert_eq!(keys(3), set(&["built", "built/d", "built/d/f"]));
    assert_eq!(
        keys(4),
        set(&["built", "built/renamed", "data", "data/keep", "data/owned"])
    );
    assert_tar_file(&layers[3], "built/d/f", (1234, 2345), "in\n");
    assert_tar_file(&layers[4], "data/owned", (7, 8), "owned\n");
    assert_tar_file(&layers[4], "built/renamed", (0, 0), "one\ntwo\n");

    p.ok(&[
        "create",
        "--pull=never",
        "--name",
        CTR,
        "localhost/built",
        "true",
    ]);
    let exported = p.path("home/export.tar");
    p.ok(&["export", "-o", exported.to_str().unwrap(), CTR]);
    let tar = tar_entries(std::fs::File::open(&exported).unwrap());
    assert_tar_file(&tar, "built/keep", (0, 0), "keep\n");
    assert_tar_file(&tar, "built/renamed", (0, 0), "one\ntwo\n");
    assert_tar_file(&tar, "built/d/f", (1234, 2345), "in\n");
    assert_eq!(file(&tar, "built/d/f").mode, 0o640);
    assert_tar_file(&tar, "data/keep", (0, 0), "keep\nmore\n");
    assert_tar_file(&tar, "data/owned", (7, 8), "owned\n");
    assert_tar_file(&tar, "data/moved/deep", (0, 0), "deep\n");
    for gone in ["built/one", "built/gone", "data/del", "data/sub"] {
        assert!(!tar.contains_key(gone), "{gone} in the export");
    }
    p.rm(CTR);
    p.no_daemons_left();
}

/// Rootful build. (Not with `--userns-uid-map`: podman 4.3 then commits each RUN step as
/// the mount shows it, in host ids, on any mount_program, fuse-overlayfs too, and the next
/// step cannot open its own /run/.containerenv.)
#[test]
fn rootful_build() {
    let p = Podman::rootful();
    build(&p, &[]);
}

/// Rootless build: RUN steps as root of podman's user namespace.
#[test]
fn rootless_build() {
    let p = Podman::rootless();
    build(&p, &[]);
}
