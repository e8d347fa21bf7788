//! Writes the seed corpus of every target into `fuzz/seeds/TARGET/` (committed; rerun after
//! changing this file): valid and nearly-valid inputs the mutations start from.
//!
//!     cargo run --example make_seeds

use std::io::Write;
use std::path::Path;

fn header(path: &[u8], kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(kind);
    let raw = &mut h.as_old_mut().name;
    let n = path.len().min(raw.len());
    raw[..n].copy_from_slice(&path[..n]);
    h
}

fn link(h: &mut tar::Header, target: &[u8]) {
    let raw = &mut h.as_old_mut().linkname;
    let n = target.len().min(raw.len());
    raw[..n].copy_from_slice(&target[..n]);
}

/// A tar of (path, kind, data or link target, mode).
fn tar_of(entries: &[(&str, tar::EntryType, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, kind, data, mode) in entries {
        let is_link = matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link);
        let size = if *kind == tar::EntryType::Regular { data.len() as u64 } else { 0 };
        let mut h = header(p.as_bytes(), *kind, size, *mode);
        if is_link {
            link(&mut h, data);
        }
        h.set_cksum();
        let body: &[u8] = if size > 0 { data } else { &[] };
        b.append(&h, body).expect("tar");
    }
    b.into_inner().expect("tar")
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gz");
    e.finish().expect("gz")
}

fn sha(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join(name), data).expect("write");
}

fn main() {
    use tar::EntryType::*;
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let _ = std::fs::remove_dir_all(&seeds);

    // tar_import
    let d = seeds.join("tar_import");
    let basic = tar_of(&[
        ("./", Directory, b"", 0o755),
        ("etc/", Directory, b"", 0o755),
        ("etc/passwd", Regular, b"root:x:0:0::/:/bin/sh\n", 0o644),
        ("bin/sh", Regular, b"#!fake\n", 0o4755),
        ("bin/ls", Symlink, b"sh", 0o777),
        ("bin/ln", Link, b"bin/sh", 0o755),
        ("run/fifo", Fifo, b"", 0o600),
        ("dev/null", Char, b"", 0o666),
        ("usr/.wh.gone", Regular, b"", 0o644),
        ("opt/.wh..wh..opq", Regular, b"", 0o644),
    ]);
    write(&d, "basic.tar", &basic);
    write(&d, "basic.tar.gz", &gz(&basic));
    write(&d, "basic.tar.zst", &zstd::encode_all(&basic[..], 1).expect("zstd"));
    write(&d, "dotdot.tar", &tar_of(&[("a/../../x", Regular, b"x", 0o644)]));
    write(&d, "abs.tar", &tar_of(&[("/etc/x", Regular, b"x", 0o644)]));
    write(
        &d,
        "symlink-write.tar",
        &tar_of(&[("a", Symlink, b"/etc", 0o777), ("a/passwd", Regular, b"pwn", 0o644)]),
    );
    write(
        &d,
        "symlink-dir-write.tar",
        &tar_of(&[("a", Symlink, b"../..", 0o777), ("a/b/c", Directory, b"", 0o755)]),
    );
    write(&d, "hardlink-out.tar", &tar_of(&[("h", Link, b"../../etc/passwd", 0o644)]));
    write(&d, "hardlink-abs.tar", &tar_of(&[("h", Link, b"/etc/passwd", 0o644)]));
    write(
        &d,
        "hardlink-via-symlink.tar",
        &tar_of(&[("s", Symlink, b"/etc", 0o777), ("h", Link, b"s/passwd", 0o644)]),
    );
    write(
        &d,
        "whiteouts.tar",
        &tar_of(&[
            (".wh.", Regular, b"", 0o644),
            (".wh..", Regular, b"", 0o644),
            (".wh...", Regular, b"", 0o644),
            ("d/.wh..wh.", Regular, b"", 0o644),
            ("d/x", Regular, b"x", 0o644),
            ("d/.wh.x", Regular, b"", 0o644),
        ]),
    );
    write(&d, "dir-over-file.tar", &tar_of(&[("x", Regular, b"1", 0o644), ("x/y", Regular, b"2", 0o644)]));
    write(&d, "file-over-dir.tar", &tar_of(&[("x/y", Regular, b"1", 0o644), ("x", Regular, b"2", 0o644)]));
    write(&d, "ro-dir.tar", &tar_of(&[("r", Directory, b"", 0o555), ("r/f", Regular, b"1", 0o444)]));
    {
        // A pax header with xattrs, one of them union-internal.
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("SCHILY.xattr.user.x", &b"1"[..]),
            ("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..]),
        ])
        .expect("pax");
        let mut h = header(b"px", Regular, 1, 0o644);
        h.set_cksum();
        b.append(&h, &b"p"[..]).expect("tar");
        write(&d, "pax-xattrs.tar", &b.into_inner().expect("tar"));
    }
    {
        // A GNU long name.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(Regular);
        b.append_data(&mut h, "d/".repeat(80) + "long", &b"l"[..]).expect("tar");
        write(&d, "longname.tar", &b.into_inner().expect("tar"));
    }
    let mut cut = basic.clone();
    cut.truncate(700);
    write(&d, "truncated.tar", &cut);
    let g = gz(&basic);
    write(&d, "truncated.tar.gz", &g[..g.len() / 2]);

    // image_load: a docker-archive with one layer, and an OCI archive.
    let d = seeds.join("image_load");
    let layer = tar_of(&[("etc/hello", Regular, b"hello\n", 0o644)]);
    let lh = sha(&layer);
    let cfg = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["sha256:{lh}"]}}}}"#
    );
    let ch = sha(cfg.as_bytes());
    let manifest = format!(
        r#"[{{"Config":"blobs/sha256/{ch}","RepoTags":["seed:1"],"Layers":["blobs/sha256/{lh}"]}}]"#
    );
    let docker = tar_of(&[
        (&format!("blobs/sha256/{ch}"), Regular, cfg.as_bytes(), 0o644),
        (&format!("blobs/sha256/{lh}"), Regular, &layer, 0o644),
        ("manifest.json", Regular, manifest.as_bytes(), 0o644),
    ]);
    write(&d, "docker-archive.tar", &docker);
    write(&d, "docker-archive.tar.gz", &gz(&docker));
    let glayer = gz(&layer);
    let gh = sha(&glayer);
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{ch}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{gh}","size":{}}}]}}"#,
        cfg.len(),
        glayer.len()
    );
    let mh = sha(m.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{mh}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"seed:2"}}}}]}}"#,
        m.len()
    );
    let oci = tar_of(&[
        ("oci-layout", Regular, br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644),
        ("index.json", Regular, index.as_bytes(), 0o644),
        (&format!("blobs/sha256/{mh}"), Regular, m.as_bytes(), 0o644),
        (&format!("blobs/sha256/{ch}"), Regular, cfg.as_bytes(), 0o644),
        (&format!("blobs/sha256/{gh}"), Regular, &glayer, 0o644),
    ]);
    write(&d, "oci-archive.tar", &oci);

    // meta_record
    let d = seeds.join("meta_record");
    for (n, s) in [
        ("ino", "ino 1234\nend\n"),
        ("redirect", "ino 77\nredirect /a/b\nend\n"),
        ("data", "data 2 usr/lib/x.so\nident 4096 1700000000 5 99\nend\n"),
        ("nlink", "ino 9\nnlink 3\nend\n"),
        (
            "delta",
            "ino 12\nident 8388608 1700000000 0 42\ndelta 1 4096 8388608\nblocks 0-1,5-9,100-2048\ndata 1 var/db.img\nend\n",
        ),
        ("delta-only", "1 65536 1048576\n0-3,7-8"),
        ("empty", "end\n"),
        ("cut", "ino 12\ndelta 1 4096 81"),
    ] {
        write(&d, n, s.as_bytes());
    }

    // mount_options
    let d = seeds.join("mount_options");
    for (n, s) in [
        ("basic", "lowerdir=/l1:/l2,upperdir=/u,workdir=/w"),
        ("podman", "lowerdir=/a:/b\\:c,,upperdir=/u,workdir=/w,volatile"),
        ("two-groups", "lowerdir=/a\0upperdir=/u,workdir=/w,ro"),
        (
            "all",
            "lowerdir=/a,upperdir=/u,workdir=/w,uidmapping=0:1000:1:1:100000:65536,gidmapping=0:1000:1,squash_to_uid=5,squash_to_gid=6,static_nlink,fsync=0,timeout=1.5,threaded=4,passthrough=off,delta_threshold=64k,delta_block=64k,compact_ratio=0.25,trace=/tmp/t,trace_ops=read:write,trace_path=/var/lib/**,fsname=x,allow_other,noatime",
        ),
        ("nodelta", "lowerdir=/a,nodelta,threads=2,squash_to_root"),
    ] {
        write(&d, n, s.as_bytes());
    }

    // image_reference
    let d = seeds.join("image_reference");
    for (n, s) in [
        ("short", "busybox"),
        ("tag", "busybox:1.36"),
        ("path", "team/app:v1"),
        ("registry", "127.0.0.1:5000/team/app:1"),
        ("localhost", "localhost/app"),
        ("digest", "quay.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
        ("both", "docker.io/library/busybox:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
        ("ipv6", "[::1]:5000/app:1"),
    ] {
        write(&d, n, s.as_bytes());
    }
    println!("seeds written to {}", seeds.display());
}
