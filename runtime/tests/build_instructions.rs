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

#[test]
fn copy_wildcards_match_as_docker_does() {
    let dir = fresh_dir("build-glob");
    let store = busybox_store(&dir);
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    for f in ["a.txt", "b.txt", "c.log", "sub/d.txt", "skip.txt"] {
        std::fs::write(ctx.join(f), f).unwrap();
    }
    std::fs::write(ctx.join(".dockerignore"), "skip.txt\n").unwrap();
    let df = "FROM busybox\n\
              COPY *.txt /out/\n\
              COPY s?b/*.txt /deep/\n\
              COPY [a-b].txt c.* /cls/\n";
    check(&build(&store, &ctx, df, "glob:1"), "build");
    let out = strata_at(
        &store,
        &["run", "--rm", "glob:1", "sh", "-c", "ls /out /deep /cls"],
    );
    assert_eq!(
        check(&out, "ls"),
        "/cls:\na.txt\nb.txt\nc.log\n\n/deep:\nd.txt\n\n/out:\na.txt\nb.txt\n"
    );
    // Nothing matching, or several sources into a destination without a slash: refused.
    for (line, what) in [
        ("COPY nomatch* /x/", "nomatch*"),
        ("COPY *.txt /one", "must be a directory"),
    ] {
        let out = build(&store, &ctx, &format!("FROM busybox\n{line}\n"), "glob:2");
        assert!(!out.status.success(), "{line}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Dockerfile:2") && err.contains(what), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn heredoc_sources_archives_and_missing_parents() {
    let dir = fresh_dir("build-heredoc");
    let store = busybox_store(&dir);
    let ctx = dir.join("ctx");
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("t/sub")).unwrap();
    std::fs::write(tree.join("t/sub/f"), "in tar\n").unwrap();
    std::fs::create_dir_all(&ctx).unwrap();
    // Existing directories on the way keep their mode and owner (/tmp below).
    // Archives by their bytes: gzip, xz, bzip2 and plain; a ".tar" that is no tar is a file.
    for (name, flag) in [
        ("a.tar.gz", "-z"),
        ("b.txz", "-J"),
        ("c.tbz", "-j"),
        ("d.tar", "-v"),
    ] {
        let out = std::process::Command::new("tar")
            .args(["--owner=7", "--group=8", flag, "-cf"])
            .arg(ctx.join(name))
            .arg("-C")
            .arg(&tree)
            .arg("t")
            .output()
            .unwrap();
        assert!(out.status.success(), "tar {name}");
    }
    std::fs::write(ctx.join("fake.tar"), "not a tar\n").unwrap();
    let df = "FROM busybox\n\
              ENV WHO=world\n\
              COPY <<EOF /etc/greeting\n\
              hello $WHO\n\
              EOF\n\
              COPY <<'EOT' /opt/new/dir/raw.txt\n\
              kept $WHO\n\
              EOT\n\
              ADD a.tar.gz /gz/\n\
              ADD b.txz /xz\n\
              ADD c.tbz d.tar /multi/\n\
              ADD fake.tar /fake/\n\
              COPY fake.tar /deep/er/copy\n\
              RUN chmod 1777 /tmp && chown 5:6 /tmp\n\
              COPY fake.tar /tmp/new/copy\n\
              COPY fake.tar Dockerfile /tmp/\n";
    check(&build(&store, &ctx, df, "hd:1"), "build");
    let out = strata_at(
        &store,
        &[
            "run",
            "--rm",
            "hd:1",
            "sh",
            "-c",
            "cat /etc/greeting /opt/new/dir/raw.txt /gz/t/sub/f /xz/t/sub/f /multi/t/sub/f \
             /fake/fake.tar /deep/er/copy; stat -c '%a %u:%g' /etc/greeting /xz/t/sub/f /tmp",
        ],
    );
    assert_eq!(
        check(&out, "run"),
        "hello world\nkept $WHO\nin tar\nin tar\nin tar\nnot a tar\nnot a tar\n644 0:0\n644 7:8\n1777 5:6\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn from_pulls_a_missing_base_that_names_its_registry() {
    let dir = fresh_dir("build-from-pull");
    let store = busybox_store(&dir.join("src"));
    let reg = common::registry::Registry::start(&dir.join("reg"));
    let image = format!("{}/base/bb:1", reg.host());
    check(
        &strata_at(&store, &["push", "-q", "busybox", &image]),
        "push",
    );
    let empty = dir.join("empty");
    let ctx = dir.join("ctx");
    let df = format!("FROM {image}\nRUN echo built > /b\n");
    check(
        &build(&empty, &ctx, &df, "pulled:1"),
        "build from a registry",
    );
    let out = strata_at(&empty, &["run", "--rm", "pulled:1", "cat", "/b"]);
    assert_eq!(check(&out, "run"), "built\n");
    // A short name that is not in the store is not guessed at: one clear line.
    let out = build(&empty, &ctx, "FROM nosuchbase\nRUN true\n", "x:1");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nosuchbase") && err.contains("strata pull"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn step_output_goes_to_stderr_and_stdout_holds_only_the_id() {
    let dir = fresh_dir("build-output");
    let store = busybox_store(&dir);
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo to-out && echo to-err >&2\n",
    )
    .unwrap();
    let c = ctx.to_str().unwrap();
    let out = strata_at(&store, &["build", "--no-cache", "-t", "o:1", c]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.trim().starts_with("sha256:") && stdout.trim().lines().count() == 1,
        "{stdout}"
    );
    assert!(
        stderr.contains("to-out") && stderr.contains("to-err"),
        "{stderr}"
    );
    // -q: the id and nothing else anywhere.
    let out = strata_at(&store, &["build", "-q", "--no-cache", "-t", "o:1", c]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim().lines().count(),
        1
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
