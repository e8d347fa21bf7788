//! `strata build`: a multi-step Dockerfile built with real containers, and a failing RUN.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{busybox_store, check, fresh_dir, strata_at};
use std::path::Path;

fn build(store: &Path, ctx: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    let c = ctx.to_str().unwrap();
    args.push(c);
    strata_at(store, &args)
}

#[test]
fn multi_step_build_runs_copies_and_sets_config() {
    let dir = fresh_dir("build-basic");
    let store = busybox_store(&dir);
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    std::fs::write(ctx.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(ctx.join("sub/a"), "a\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\n\
         ENV GREETING=hi\n\
         WORKDIR /app\n\
         RUN echo \"$GREETING\" > made && mkdir -p /data\n\
         COPY hello.txt ./\n\
         COPY sub /data/sub\n\
         USER 0\n\
         EXPOSE 8080\n\
         LABEL org.test=yes\n\
         ENTRYPOINT [\"/bin/sh\", \"-c\"]\n\
         CMD [\"cat /app/made /app/hello.txt /data/sub/a\"]\n",
    )
    .unwrap();
    let out = build(&store, &ctx, &["-t", "built:1"]);
    let id = check(&out, "strata build");
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let run = strata_at(&store, &["run", "--rm", "built:1"]);
    assert_eq!(check(&run, "run built"), "hi\nhello\na\n");
    let insp = check(
        &strata_at(&store, &["image", "inspect", "built:1"]),
        "inspect",
    );
    for want in ["GREETING=hi", "\"/app\"", "8080/tcp", "org.test", "\"0\""] {
        assert!(insp.contains(want), "{want} missing in {insp}");
    }
    let hist = check(
        &strata_at(&store, &["history", "--no-trunc", "built:1"]),
        "history",
    );
    assert!(hist.contains("RUN /bin/sh -c echo"), "{hist}");
    assert!(hist.contains("COPY hello.txt ./"), "{hist}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failing_run_names_line_and_code_and_tags_nothing() {
    let dir = fresh_dir("build-fail");
    let store = busybox_store(&dir);
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN touch /x\nRUN exit 3\n",
    )
    .unwrap();
    let before = check(&strata_at(&store, &["images", "-q", "-a"]), "images");
    let out = build(&store, &ctx, &["-t", "bad:1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(!strata_at(&store, &["image", "inspect", "bad:1"])
        .status
        .success());
    let ps = check(&strata_at(&store, &["ps", "-a", "-q"]), "ps");
    assert_eq!(ps.trim(), "", "stray containers");
    let after = check(&strata_at(&store, &["images", "-q", "-a"]), "images");
    assert_eq!(before, after, "stray images");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn copy_options_not_applied_yet_are_refused_before_anything_runs() {
    let dir = fresh_dir("build-refuse");
    let store = busybox_store(&dir);
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("f"), "f\n").unwrap();
    for (line, what) in [
        ("ADD http://127.0.0.1:9/x.tar /x/", "need the network"),
        ("COPY --parents f /x/", "--parents"),
        ("COPY --exclude=*.log f /x/", "--exclude"),
    ] {
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM busybox\nRUN echo ran > /r\n{line}\n"),
        )
        .unwrap();
        let before = strata_at(&store, &["images", "-q"]);
        let out = build(&store, &ctx, &["-t", "refused:1"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{line}: built");
        assert!(
            err.contains("Dockerfile:3:") && err.contains(what),
            "{line}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{line}: {err}");
        let after = strata_at(&store, &["images", "-q"]);
        assert_eq!(before.stdout, after.stdout, "{line}: images changed");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
