//! `strata build` instructions beyond the basics: COPY --chown/--chmod (names from the
//! image's own passwd and group), HEALTHCHECK and ONBUILD stored in the config and the
//! triggers run in a build FROM the image. Real builds on a busybox store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{busybox_store, check, fresh_dir, strata_at};
use std::path::Path;

fn build(store: &Path, ctx: &Path, dockerfile: &str, tag: &str) -> std::process::Output {
    std::fs::create_dir_all(ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    strata_at(store, &["build", "-q", "-t", tag, ctx.to_str().unwrap()])
}

fn config(store: &Path, tag: &str) -> serde_json::Value {
    let out = check(&strata_at(store, &["image", "inspect", tag]), "inspect");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["Config"].clone()
}

#[test]
fn copy_chown_and_chmod_set_owner_and_mode() {
    let dir = fresh_dir("build-chown");
    let store = busybox_store(&dir);
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("d/sub")).unwrap();
    std::fs::write(ctx.join("f"), "f\n").unwrap();
    std::fs::write(ctx.join("d/sub/x"), "x\n").unwrap();
    let df = |mode: &str| {
        format!(
            "FROM busybox\n\
             RUN echo 'bob:x:1000:1000::/:/bin/sh' >> /etc/passwd && echo 'staff:x:50:' >> /etc/group\n\
             COPY --chown=bob:staff --chmod={mode} f /f\n\
             COPY --chown=7:8 d /d\n\
             COPY --chown=bob f /g\n\
             COPY f /h\n"
        )
    };
    check(&build(&store, &ctx, &df("0640"), "own:1"), "build");
    let stat = |tag: &str| {
        check(
            &strata_at(
                &store,
                &[
                    "run",
                    "--rm",
                    tag,
                    "stat",
                    "-c",
                    "%n %u %g %a",
                    "/f",
                    "/d/sub",
                    "/d/sub/x",
                    "/g",
                    "/h",
                ],
            ),
            "stat",
        )
    };
    let got = stat("own:1");
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines[0], "/f 1000 50 640", "{got}");
    assert!(lines[1].starts_with("/d/sub 7 8 "), "{got}");
    assert!(lines[2].starts_with("/d/sub/x 7 8 "), "{got}");
    // A user without a group: the group id is the user's number (docker).
    assert!(lines[3].starts_with("/g 1000 1000 "), "{got}");
    assert!(lines[4].starts_with("/h 0 0 "), "{got}");
    // Another mode is another step: not the cached one.
    check(&build(&store, &ctx, &df("0600"), "own:2"), "build");
    assert!(stat("own:2").starts_with("/f 1000 50 600\n"));
    // A name the image does not know fails the build in one line, naming it.
    let out = build(
        &store,
        &ctx,
        "FROM busybox\nCOPY --chown=nobody9 f /f\n",
        "own:3",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Dockerfile:2") && err.contains("nobody9"),
        "{err}"
    );
    let out = build(
        &store,
        &ctx,
        "FROM busybox\nCOPY --chmod=u+x f /f\n",
        "own:4",
    );
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn healthcheck_and_onbuild_are_stored_and_triggers_run_in_the_child() {
    let dir = fresh_dir("build-onbuild");
    let store = busybox_store(&dir);
    let base = "FROM busybox\n\
                HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD wget -q -O- localhost\n\
                ONBUILD RUN echo triggered > /onbuild\n\
                ONBUILD ENV FROM_TRIGGER=yes\n\
                SHELL [\"/bin/sh\", \"-ec\"]\n";
    check(&build(&store, &dir.join("b"), base, "base:1"), "build base");
    let c = config(&store, "base:1");
    assert_eq!(
        c["Healthcheck"],
        serde_json::json!({
            "Test": ["CMD-SHELL", "wget -q -O- localhost"],
            "Interval": 30_000_000_000u64,
            "Timeout": 5_000_000_000u64,
            "Retries": 3
        }),
        "{c}"
    );
    assert_eq!(
        c["OnBuild"],
        serde_json::json!(["RUN echo triggered > /onbuild", "ENV FROM_TRIGGER=yes"])
    );
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    // The base itself did not run its triggers.
    let out = strata_at(&store, &["run", "--rm", "base:1", "ls", "/onbuild"]);
    assert!(!out.status.success());

    let child = "FROM base:1\nHEALTHCHECK NONE\nRUN cat /onbuild\n";
    check(
        &build(&store, &dir.join("c"), child, "child:1"),
        "build child",
    );
    let run = strata_at(
        &store,
        &[
            "run",
            "--rm",
            "child:1",
            "sh",
            "-c",
            "cat /onbuild; echo $FROM_TRIGGER",
        ],
    );
    assert_eq!(check(&run, "run child"), "triggered\nyes\n");
    let c = config(&store, "child:1");
    assert_eq!(c["Healthcheck"], serde_json::json!({"Test": ["NONE"]}));
    // Triggers are not inherited by the child's own children.
    assert!(c.get("OnBuild").is_none_or(|v| v.is_null()), "{c}");
    let _ = std::fs::remove_dir_all(&dir);
}
