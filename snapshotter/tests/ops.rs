//! The snapshotter's semantics without containerd: the trait methods called directly on a
//! root in a temp dir (mounts, kinds, errors, labels, usage, restarts, cleanup).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use containerd_snapshots::{Kind, Snapshotter};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use strata_snapshotter::{Error, Strata};

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn root(tag: &str) -> Dir {
    let p = std::env::temp_dir().join(format!("strata-snap-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    Dir(p)
}

fn fs(root: &Path, id: u32) -> String {
    root.join(format!("snapshots/{id}/fs"))
        .display()
        .to_string()
}

fn none() -> HashMap<String, String> {
    HashMap::new()
}

#[tokio::test]
async fn mounts_follow_the_overlay_snapshotter() {
    let d = root("mounts");
    let s = Strata::open(&d.0).unwrap();
    let m = s.prepare("a".into(), "".into(), none()).await.unwrap();
    assert_eq!(m[0].r#type, "bind");
    assert_eq!(m[0].source, fs(&d.0, 1));
    assert_eq!(m[0].options, ["rw", "rbind"]);
    s.commit("A".into(), "a".into(), none()).await.unwrap();
    assert_eq!(s.stat("A".into()).await.unwrap().kind, Kind::Committed);
    assert!(matches!(s.stat("a".into()).await, Err(Error::NotFound(_))));

    let v = s.view("v".into(), "A".into(), none()).await.unwrap();
    assert_eq!(
        (v[0].r#type.as_str(), v[0].source.clone()),
        ("bind", fs(&d.0, 1))
    );
    assert_eq!(v[0].options, ["ro", "rbind"]);

    let m = s.prepare("b".into(), "A".into(), none()).await.unwrap();
    assert_eq!(
        (m[0].r#type.as_str(), m[0].source.as_str()),
        ("overlay", "overlay")
    );
    let work = d.0.join("snapshots/3/work").display().to_string();
    assert_eq!(
        m[0].options,
        [
            format!("workdir={work}"),
            format!("upperdir={}", fs(&d.0, 3)),
            format!("lowerdir={}", fs(&d.0, 1)),
        ]
    );
    s.commit("B".into(), "b".into(), none()).await.unwrap();
    // Two parents, nearest first; a view of them is an overlay without an upper.
    let m = s.view("v2".into(), "B".into(), none()).await.unwrap();
    assert_eq!(m[0].r#type, "overlay");
    assert_eq!(
        m[0].options,
        [format!("lowerdir={}:{}", fs(&d.0, 3), fs(&d.0, 1))]
    );
    assert_eq!(
        s.mounts("v2".into()).await.unwrap()[0].options,
        m[0].options
    );
}

#[tokio::test]
async fn errors_are_containerds() {
    let d = root("errors");
    let s = Strata::open(&d.0).unwrap();
    s.prepare("a".into(), "".into(), none()).await.unwrap();
    let e = s.prepare("a".into(), "".into(), none()).await.unwrap_err();
    assert!(matches!(e, Error::AlreadyExists(_)), "{e}");
    let e = s
        .prepare("b".into(), "nope".into(), none())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
    let e = s.prepare("b".into(), "a".into(), none()).await.unwrap_err();
    assert!(
        matches!(e, Error::FailedPrecondition(_)),
        "active parent: {e}"
    );
    s.view("v".into(), "".into(), none()).await.unwrap();
    let e = s.commit("V".into(), "v".into(), none()).await.unwrap_err();
    assert!(
        matches!(e, Error::FailedPrecondition(_)),
        "commit of a view: {e}"
    );
    s.commit("A".into(), "a".into(), none()).await.unwrap();
    s.prepare("c".into(), "A".into(), none()).await.unwrap();
    let e = s.remove("A".into()).await.unwrap_err();
    assert!(
        matches!(e, Error::FailedPrecondition(_)),
        "parent removed: {e}"
    );
    s.remove("c".into()).await.unwrap();
    s.remove("A".into()).await.unwrap();
    assert!(!d.0.join("snapshots/1").exists(), "A's directory left");
    let e = s.remove("A".into()).await.unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
    let status: containerd_snapshots::tonic::Status = e.into();
    assert_eq!(status.code(), containerd_snapshots::tonic::Code::NotFound);
}

#[tokio::test]
async fn labels_update_by_field_path() {
    let d = root("labels");
    let s = Strata::open(&d.0).unwrap();
    let labels = HashMap::from([("x".to_string(), "1".to_string())]);
    s.prepare("a".into(), "".into(), labels).await.unwrap();
    let mut info = s.stat("a".into()).await.unwrap();
    info.labels = HashMap::from([("y".to_string(), "2".to_string())]);
    let out = s.update(info, Some(vec!["labels.y".into()])).await.unwrap();
    assert_eq!(out.labels.len(), 2, "{:?}", out.labels);
    let mut info = s.stat("a".into()).await.unwrap();
    info.labels = HashMap::from([("z".to_string(), "3".to_string())]);
    let out = s.update(info, None).await.unwrap();
    assert_eq!(
        out.labels,
        HashMap::from([("z".to_string(), "3".to_string())])
    );
    let info = s.stat("a".into()).await.unwrap();
    let e = s
        .update(info, Some(vec!["parent".into()]))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}

#[tokio::test]
async fn usage_restart_and_cleanup() {
    let d = root("usage");
    {
        let s = Strata::open(&d.0).unwrap();
        s.prepare("a".into(), "".into(), none()).await.unwrap();
        std::fs::write(Path::new(&fs(&d.0, 1)).join("f"), vec![7u8; 100_000]).unwrap();
        let u = s.usage("a".into()).await.unwrap();
        assert_eq!(u.inodes, 2, "fs/ and f");
        assert!(u.size >= 100_000, "{}", u.size);
        // One snapshotter per root.
        assert!(
            Strata::open(&d.0).is_err(),
            "a second snapshotter on the root"
        );
        s.commit("A".into(), "a".into(), none()).await.unwrap();
    }
    std::fs::create_dir_all(d.0.join("snapshots/99/fs")).unwrap();
    let s = Strata::open(&d.0).unwrap();
    assert_eq!(s.stat("A".into()).await.unwrap().kind, Kind::Committed);
    s.clear().await.unwrap();
    assert!(!d.0.join("snapshots/99").exists(), "stray directory kept");
    assert!(d.0.join("snapshots/1/fs/f").exists());
    // Ids keep counting after a restart: a new snapshot never reuses A's directory.
    let m = s.prepare("b".into(), "A".into(), none()).await.unwrap();
    assert!(
        m[0].options[1].ends_with("/snapshots/2/fs"),
        "{:?}",
        m[0].options
    );
}
