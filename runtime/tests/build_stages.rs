//! `strata build`: multi-stage builds (COPY --from, --target), .dockerignore, ARG scoping.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{busybox_store, check, fresh_dir, strata_at};

#[test]
fn copy_from_an_earlier_stage_and_target() {
    let dir = fresh_dir("build-stages");
    let store = busybox_store(&dir);
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "ARG BASE=busybox\n\
         FROM $BASE AS builder\n\
         ARG MSG=default\n\
         RUN mkdir /out && echo \"$MSG\" > /out/msg\n\
         FROM busybox AS final\n\
         COPY --from=builder /out/msg /msg\n\
         RUN echo \"[$MSG]\" > /argless\n",
    )
    .unwrap();
    let c = ctx.to_str().unwrap();
    let out = strata_at(
        &store,
        &["build", "--build-arg", "MSG=given", "-t", "ms:1", c],
    );
    check(&out, "build");
    let run = strata_at(&store, &["run", "--rm", "ms:1", "cat", "/msg", "/argless"]);
    assert_eq!(check(&run, "run"), "given\n[]\n");
    let out = strata_at(&store, &["build", "--target", "builder", "-t", "ms:b", c]);
    check(&out, "build --target");
    let run = strata_at(&store, &["run", "--rm", "ms:b", "cat", "/out/msg"]);
    assert_eq!(check(&run, "run"), "default\n");
    let run = strata_at(&store, &["run", "--rm", "ms:b", "ls", "/msg"]);
    assert!(
        !run.status.success(),
        "the target stage must not hold later stages' files"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dockerignore_excludes_context_files() {
    let dir = fresh_dir("build-ignore");
    let store = busybox_store(&dir);
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("src/cache")).unwrap();
    std::fs::write(ctx.join("src/keep.txt"), "k\n").unwrap();
    std::fs::write(ctx.join("src/drop.log"), "d\n").unwrap();
    std::fs::write(ctx.join("src/cache/x"), "x\n").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "**/*.log\nsrc/cache\n").unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY src /src\n").unwrap();
    let out = strata_at(&store, &["build", "-t", "ig:1", ctx.to_str().unwrap()]);
    check(&out, "build");
    let run = strata_at(&store, &["run", "--rm", "ig:1", "find", "/src"]);
    let mut got: Vec<String> = check(&run, "run").lines().map(String::from).collect();
    got.sort();
    assert_eq!(got, ["/src", "/src/keep.txt"]);
    let _ = std::fs::remove_dir_all(&dir);
}
