//! `strata build`'s cache: an unchanged rebuild is all CACHED with the same image id; a
//! changed copied file reruns that COPY and the steps after it only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{busybox_store, check, fresh_dir, strata_at};

#[test]
fn rebuild_hits_cache_and_a_changed_file_reruns_later_steps() {
    let dir = fresh_dir("build-cache");
    let store = busybox_store(&dir);
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("f"), "one\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo early > /early\nCOPY f /f\nRUN cat /f > /late\n",
    )
    .unwrap();
    let c = ctx.to_str().unwrap();
    let first = strata_at(&store, &["build", "-t", "c:1", c]);
    let id1 = check(&first, "first build");
    let second = strata_at(&store, &["build", "-t", "c:1", c]);
    let id2 = check(&second, "second build");
    assert_eq!(id1, id2);
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(err.matches("CACHED").count(), 3, "{err}");
    std::fs::write(ctx.join("f"), "two\n").unwrap();
    let third = strata_at(&store, &["build", "-t", "c:1", c]);
    let id3 = check(&third, "third build");
    assert_ne!(id1, id3);
    let err = String::from_utf8_lossy(&third.stderr);
    assert_eq!(err.matches("CACHED").count(), 1, "{err}");
    let run = strata_at(&store, &["run", "--rm", "c:1", "cat", "/early", "/late"]);
    assert_eq!(check(&run, "run"), "early\ntwo\n");
    let nc = strata_at(&store, &["build", "--no-cache", c]);
    check(&nc, "no-cache build");
    assert_eq!(
        String::from_utf8_lossy(&nc.stderr)
            .matches("CACHED")
            .count(),
        0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
