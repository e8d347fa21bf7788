//! Named volumes the docker way: `volume create/ls/inspect/rm/prune`, `-v NAME:/path`
//! creating one on first use and filling it with the image's content, binds staying binds,
//! anonymous volumes (`-v /path`, an image VOLUME) going with their container.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod parity;
use parity::Env;

#[test]
fn volume_commands_in_docker_shape() {
    let e = Env::new("vol");
    assert_eq!(
        e.ok(&["volume", "create", "--label", "team=db", "data1"]),
        "data1\n"
    );
    // Creating it again is no error (docker's answer is the name).
    assert_eq!(e.ok(&["volume", "create", "data1"]), "data1\n");
    let anon = e.ok(&["volume", "create"]);
    assert_eq!(anon.trim().len(), 64, "{anon}");
    let ls = e.ok(&["volume", "ls"]);
    assert!(ls.starts_with("DRIVER          VOLUME NAME\n"), "{ls}");
    assert!(ls.contains("local           data1\n"), "{ls}");
    let q = e.ok(&["volume", "ls", "-q"]);
    assert_eq!(q.lines().count(), 2, "{q}");
    let v: serde_json::Value =
        serde_json::from_str(&e.ok(&["volume", "inspect", "data1"])).unwrap();
    let v = &v[0];
    assert_eq!(v["Name"], "data1");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["team"], "db");
    let mp = e.root().join("volumes/data1/_data");
    assert_eq!(v["Mountpoint"], mp.to_str().unwrap());
    assert!(mp.is_dir());
    assert!(v["CreatedAt"].as_str().unwrap().ends_with('Z'));
    // Unsafe names are refused before anything is made.
    for bad in ["../escape", "a/b", ".hidden", ""] {
        let err = e.fails(&["volume", "create", bad]);
        assert!(err.contains("invalid volume name"), "{bad}: {err}");
        let err = e.fails(&[
            "run",
            "--rm",
            "-v",
            &format!("{bad}x/..:/d"),
            "busybox",
            "true",
        ]);
        assert!(!err.is_empty());
    }
    assert!(!e.root().join("escape").exists());
    assert!(e
        .fails(&["volume", "rm", "nope"])
        .contains("no such volume"));
    e.ok(&["volume", "rm", "-f", "nope"]);
    e.ok(&["volume", "rm", "data1"]);
    assert!(!mp.exists());
    // prune: unused anonymous volumes only (all unused ones with -a); one made by
    // `volume create` without a name is not anonymous.
    e.ok(&["volume", "create", "named"]);
    e.ok(&["run", "--name", "anon", "-v", "/data", "busybox", "true"]);
    e.ok(&["rm", "anon"]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]).lines().count(), 3);
    e.ok(&["volume", "prune"]);
    let left = e.ok(&["volume", "ls", "-q"]);
    assert_eq!(left, format!("{}named\n", anon), "{left}");
    e.ok(&["volume", "prune", "-a"]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn named_volume_on_first_use_gets_the_image_content_and_outlives_the_container() {
    let e = Env::new("volrun");
    let out = e.ok(&[
        "run",
        "--rm",
        "-v",
        "db:/data",
        "busybox",
        "sh",
        "-c",
        "cat /data/seed /data/sub/deep; echo kept > /data/new",
    ]);
    assert_eq!(out, "from the image\ndeep\n");
    let data = e.root().join("volumes/db/_data");
    assert_eq!(std::fs::read_to_string(data.join("new")).unwrap(), "kept\n");
    // Not empty any more: a second container sees the volume, not the image.
    std::fs::remove_file(data.join("seed")).unwrap();
    let out = e.ok(&[
        "run",
        "--rm",
        "-v",
        "db:/data:ro",
        "busybox",
        "sh",
        "-c",
        "ls /data; touch /data/x 2>&1 || true",
    ]);
    assert!(out.starts_with("new\nsub\n"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    // --mount type=volume is the same volume.
    let out = e.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=db,dst=/v,readonly",
        "busybox",
        "cat",
        "/v/new",
    ]);
    assert_eq!(out, "kept\n");
    // In use (even by a stopped container): rm refused; free after the container goes.
    e.ok(&["run", "--name", "user", "-v", "db:/data", "busybox", "true"]);
    let err = e.fails(&["volume", "rm", "db"]);
    assert!(err.contains("in use") && err.contains("user"), "{err}");
    e.ok(&["rm", "user"]);
    assert!(
        data.exists(),
        "a named volume outlives rm -v's container? it must stay"
    );
    e.ok(&["volume", "rm", "db"]);
    // An absolute path stays a bind of the host directory.
    let host = e.dir.join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    let spec = format!("{}:/h", host.display());
    e.ok(&[
        "run",
        "--rm",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "echo x > /h/f",
    ]);
    assert_eq!(std::fs::read_to_string(host.join("f")).unwrap(), "x\n");
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn anonymous_volumes_go_with_their_container() {
    let e = Env::new("volanon");
    // -v /path: a fresh anonymous volume, filled from the image.
    e.ok(&[
        "run",
        "--name",
        "a1",
        "-v",
        "/data",
        "busybox",
        "cat",
        "/data/seed",
    ]);
    let names = e.ok(&["volume", "ls", "-q"]);
    assert_eq!(names.lines().count(), 1);
    assert_eq!(names.trim().len(), 64);
    // rm without -v keeps it (dangling, as docker); rm -v removes it.
    e.ok(&["run", "--name", "a2", "-v", "/data", "busybox", "true"]);
    e.ok(&["rm", "a1"]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]).lines().count(), 2);
    e.ok(&["rm", "-v", "a2"]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]).lines().count(), 1);
    e.ok(&["volume", "prune"]);
    // The image's VOLUME gets one too, and --rm removes it.
    let out = e.ok(&[
        "run",
        "--rm",
        "withvol",
        "sh",
        "-c",
        "cat /data/seed; grep -c ' /data ' /proc/mounts",
    ]);
    assert_eq!(out, "from the image\n1\n");
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "");
    // A named volume over the image's VOLUME replaces the anonymous one.
    e.ok(&["run", "--rm", "-v", "mine:/data", "withvol", "true"]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "mine\n");
}
