//! Hostile `strata import` archives: refused, or accepted safely.

use super::*;

#[test]
fn hostile_imports_are_refused_and_change_nothing() {
    let e = Env::new();
    let good = e.input("good.tar", &good_tar());
    e.ok(&["import", good.to_str().unwrap(), "good:1"]);
    let store = e.store();
    let canary = e.canary();
    let secret = canary.join("secret");
    // How deep the store's staging dir is below the env dir: enough `..` to reach it.
    let up = "../".repeat(12);
    let before = snapshot(&store);
    let canary_before = snapshot(&canary);

    let mut long = good_tar();
    long.truncate(700);
    let mut garbage = vec![0u8; 512];
    garbage[..100].copy_from_slice(&[b'x'; 100]);
    garbage.extend_from_slice(&[0u8; 1024]);
    let mut bad_cksum = good_tar();
    bad_cksum[150] ^= 0x11; // inside the checksum field of the first header
    let mut bad_size = good_tar();
    // The second header's size field (octal) made non-numeric.
    bad_size[512 + 124..512 + 130].copy_from_slice(b"zzzzzz");
    let big_gz = gzip(&tar_of(&[f("big", &vec![7u8; 1 << 20])]));
    let big_zst = zstd(&tar_of(&[f("big", &vec![7u8; 1 << 20])]));
    // A regular entry announcing 10 GiB with only 4 KiB of data behind it.
    let huge_header = {
        let mut t = tar_of(&[f("huge", &[1u8; 4096])]);
        let mut h = tar::Header::new_gnu();
        h.as_mut_bytes().copy_from_slice(&t[..512]);
        h.set_size(10 << 30);
        h.set_cksum();
        t[..512].copy_from_slice(h.as_bytes());
        t.truncate(512 + 4096);
        t
    };

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            tar_of(&[f("etc/ok", b"ok"), f(&format!("a/{up}escape"), b"x")]),
            "escapes the root",
        ),
        (
            "dotdot-dir",
            tar_of(&[d(&format!("{up}evil/"))]),
            "escapes the root",
        ),
        (
            "absolute",
            tar_of(&[f(&format!("{}/abs", abs(&canary)), b"x")]),
            "absolute path",
        ),
        (
            "symlink then write through it",
            tar_of(&[sym("a", &abs(&canary)), f("a/secret", b"pwned\n")]),
            "symlink|not a directory",
        ),
        (
            "symlink to /etc then a/passwd",
            tar_of(&[sym("a", "/etc"), f("a/passwd", b"pwned::0:0::/:/bin/sh\n")]),
            "symlink|not a directory",
        ),
        (
            "relative symlink then mkdir through it",
            tar_of(&[sym("a", &up), d("a/made/")]),
            "symlink|not a directory",
        ),
        (
            "symlink then hard link through it",
            tar_of(&[sym("s", &abs(&canary)), hard("h", "s/secret")]),
            "symlink|not a directory",
        ),
        (
            "symlink then whiteout through it",
            tar_of(&[sym("s", &abs(&canary)), f("s/.wh.secret", b"")]),
            "symlink|not a directory",
        ),
        (
            "symlink then opaque marker through it",
            tar_of(&[sym("s", &abs(&canary)), f("s/.wh..wh..opq", b"")]),
            "symlink|not a directory",
        ),
        (
            "hard link absolute",
            tar_of(&[hard("h", &abs(&secret))]),
            "hard link target absolute",
        ),
        (
            "hard link ..",
            tar_of(&[hard(
                "h",
                &format!("{up}{}", abs(&secret).trim_start_matches('/')),
            )]),
            "escapes the root",
        ),
        (
            "hard link to a missing entry",
            tar_of(&[hard("h", "nothere")]),
            "not in the archive",
        ),
        (
            "whiteout of ..",
            tar_of(&[f("d/x", b"x"), f("d/.wh...", b"")]),
            "escapes the root",
        ),
        (
            "whiteout of .",
            tar_of(&[f("d/x", b"x"), f("d/.wh..", b"")]),
            "cannot replace",
        ),
        (
            "file over a non-empty dir",
            tar_of(&[d("y/"), f("y/z", b"1"), f("y", b"file")]),
            "cannot replace",
        ),
        (
            "name over 255 bytes",
            tar_of(&[f(&"n".repeat(300), b"x")]),
            "too long",
        ),
        ("truncated header", long, "corrupt tar"),
        ("garbage", garbage, "tar"),
        ("bad checksum", bad_cksum, "cksum|checksum"),
        ("bad size field", bad_size, "corrupt tar"),
        ("size past the end", huge_header, ""),
        ("truncated gzip", big_gz[..big_gz.len() / 2].to_vec(), "tar"),
        (
            "truncated zstd",
            big_zst[..big_zst.len() / 2].to_vec(),
            "tar",
        ),
        ("gzip magic only", vec![0x1f, 0x8b], "tar"),
        ("zstd magic only", vec![0x28, 0xb5, 0x2f, 0xfd], "tar"),
        ("empty", Vec::new(), "empty or not a tar"),
    ];
    let n = cases.len();
    for (name, bytes, expect) in cases {
        let p = e.input(&format!("{}.tar", name.replace(' ', "-")), &bytes);
        let err = e.fails(name, &["import", p.to_str().unwrap(), "bad:1"]);
        assert!(
            expect.split('|').any(|x| err.contains(x)),
            "{name}: expected {expect:?} in: {err}"
        );
        assert_eq!(snapshot(&store), before, "{name}: the store changed");
        assert_eq!(
            snapshot(&canary),
            canary_before,
            "{name}: the canary changed"
        );
        assert!(
            !Path::new("/etc/passwd").exists()
                || !std::fs::read_to_string("/etc/passwd")
                    .unwrap()
                    .contains("pwned"),
            "{name}: /etc/passwd was written"
        );
        for escape in ["escape", "evil", "abs"] {
            assert!(
                !e.dir.join(escape).exists(),
                "{name}: {escape} written outside"
            );
            assert!(
                !Path::new("/").join(escape).exists(),
                "{name}: /{escape} written"
            );
        }
    }
    eprintln!("{n} hostile imports refused, store and canary unchanged");
    // The good image is still fine.
    assert!(e.ok(&["images"]).contains("good"));
}

#[test]
fn hostile_imports_accepted_safely() {
    let e = Env::new();
    let canary = e.canary();
    let secret = canary.join("secret");
    let canary_before = snapshot(&canary);
    let setuid = E {
        mode: 0o4755,
        ..f("bin/su", b"#!/bin/sh\n")
    };
    let xattr_tar = {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..]),
            ("SCHILY.xattr.user.strata.meta", &b"ino 5\nend\n"[..]),
            ("SCHILY.xattr.user.ok", &b"1"[..]),
        ])
        .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Directory);
        h.set_path("d").unwrap();
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
        b.into_inner().unwrap()
    };
    let t = tar_of(&[
        dev("dev/mem", tar::EntryType::Char, 1, 1),
        dev("dev/sda", tar::EntryType::Block, 8, 0),
        dev("gone", tar::EntryType::Char, 0, 0),
        setuid,
        sym("out", &abs(&secret)),
        hard("out-link", "out"),
        f(".wh.", b""),
        f("w/.wh..wh.", b""),
        d("y/"),
        f("y", b"file replaces an empty dir"),
    ]);
    let p = e.input("accepted.tar", &t);
    let err_or_ok = e.strata(&["import", p.to_str().unwrap(), "acc:1"]);
    assert!(
        err_or_ok.status.success(),
        "{}",
        String::from_utf8_lossy(&err_or_ok.stderr)
    );
    let layer = std::fs::read_dir(e.store().join("layers"))
        .unwrap()
        .flatten()
        .map(|x| x.path())
        .find(|p| p.is_dir())
        .unwrap();
    // No device nodes other than the whiteout 0/0.
    for entry in snapshot(&layer) {
        if entry.contains("special") {
            assert!(entry.ends_with("special 0"), "device extracted: {entry}");
        }
    }
    assert!(!layer.join("dev/mem").exists() && !layer.join("dev/sda").exists());
    // The hard link is to the symlink itself, never to the host file it names.
    let m = layer.join("out-link").symlink_metadata().unwrap();
    assert!(m.file_type().is_symlink());
    assert_eq!(secret.metadata().unwrap().nlink(), 1);
    // A file replaced the dir y.
    assert_eq!(
        std::fs::read(layer.join("y")).unwrap(),
        b"file replaces an empty dir"
    );
    assert_eq!(snapshot(&canary), canary_before);

    // Union-internal xattrs from an image are dropped, others kept.
    let p = e.input("xattr.tar", &xattr_tar);
    e.ok(&["import", p.to_str().unwrap(), "xattr:1"]);
    let ok = Command::new("getfattr")
        .args(["-d", "-m", "-", "--absolute-names"])
        .arg(e.store().join("layers"))
        .arg("-R")
        .output();
    if let Ok(out) = ok {
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(!s.contains("strata.meta"), "{s}");
    }
    assert!(e.ok(&["images"]).contains("xattr"));
}

#[test]
fn sparse_10g_entry_does_not_fill_the_disk() {
    let e = Env::new();
    let src = e.dir.join("sparse");
    std::fs::create_dir_all(&src).unwrap();
    let big = std::fs::File::create(src.join("big")).unwrap();
    big.set_len(10 << 30).unwrap();
    {
        use std::os::unix::fs::FileExt;
        big.write_all_at(b"middle", 5 << 30).unwrap();
    }
    drop(big);
    let tar = e.dir.join("sparse.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .args(["--sparse", "-cf"])
        .arg(&tar)
        .arg("big")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_dir_all(&src).unwrap();
    assert!(std::fs::metadata(&tar).unwrap().len() < 1 << 20);
    e.ok(&["import", tar.to_str().unwrap(), "sparse:1"]);
    let du = Command::new("du")
        .args(["-s", "-B1"])
        .arg(e.store())
        .output()
        .unwrap();
    let used: u64 = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        used < 16 << 20,
        "the store uses {used} bytes for a sparse 10 GiB file"
    );
    let layer = std::fs::read_dir(e.store().join("layers"))
        .unwrap()
        .flatten()
        .map(|x| x.path())
        .find(|p| p.is_dir())
        .unwrap();
    let f = std::fs::File::open(layer.join("big")).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 10 << 30);
    let mut buf = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, (5 << 30) - 1).unwrap();
    assert_eq!(&buf, b"\0middle\0");
}

#[test]
fn rootless_import_of_devices_and_setuid_files() {
    let e = Env::new();
    let user = "strata-rootless";
    ensure_user(user);
    let home = e.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&e.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let t = tar_of(&[
        E {
            mode: 0o4755,
            ..f("bin/su", b"#!/bin/sh\n")
        },
        E {
            mode: 0o2755,
            uid: 0,
            ..f("bin/sg", b"#!/bin/sh\n")
        },
        dev("dev/mem", tar::EntryType::Char, 1, 1),
        dev("dev/sda", tar::EntryType::Block, 8, 0),
        f("etc/ok", b"ok"),
    ]);
    std::fs::write(home.join("t.tar"), &t).unwrap();
    // Owned by a uid no subordinate range maps.
    let t2 = tar_of(&[E {
        uid: 4_000_000_000,
        ..f("far", b"x")
    }]);
    std::fs::write(home.join("t2.tar"), &t2).unwrap();
    let st = Command::new("chown")
        .args(["-R", &format!("{user}:{user}")])
        .arg(&home)
        .status()
        .unwrap();
    assert!(st.success());
    let uid = nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    let (code, _, err) = as_user(
        user,
        &home,
        &["import", home.join("t.tar").to_str().unwrap(), "r:1"],
    );
    assert_eq!(code, 0, "{err}");
    let layers = home.join("data/strata/layers");
    for line in snapshot(&layers) {
        assert!(
            !line.contains("special"),
            "device node extracted rootless: {line}"
        );
    }
    // Nothing in the store is root-owned with a set-id bit (root in the image is the user).
    let mut stack = vec![layers.clone()];
    while let Some(p) = stack.pop() {
        for x in std::fs::read_dir(&p).unwrap().flatten() {
            let m = x.path().symlink_metadata().unwrap();
            if m.is_dir() {
                stack.push(x.path());
            }
            if m.mode() & 0o6000 != 0 {
                assert_ne!(
                    m.uid(),
                    0,
                    "{} is set-id and root-owned",
                    x.path().display()
                );
            }
            assert!(!m.file_type().is_block_device());
            assert!(!m.file_type().is_char_device() || m.rdev() == 0);
        }
    }
    let su = std::fs::read_dir(&layers)
        .unwrap()
        .flatten()
        .map(|x| x.path().join("bin/su"))
        .find(|p| p.exists())
        .unwrap();
    assert_eq!(su.metadata().unwrap().uid(), uid, "image root is the user");
    let before = snapshot(&home.join("data/strata"));
    let (code, _, err) = as_user(
        user,
        &home,
        &["import", home.join("t2.tar").to_str().unwrap(), "r:2"],
    );
    if code != 0 {
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert_eq!(
            snapshot(&home.join("data/strata")),
            before,
            "a refused tar changed the store"
        );
    }
}
