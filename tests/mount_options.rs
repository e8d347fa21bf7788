//! fuse-overlayfs options that change what the mount shows: id mapping, squashing,
//! static_nlink and ro with an upper.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use strata_tests::delta::DeltaMount;

fn lower_file(m: &DeltaMount, name: &str, uid: u32, gid: u32) {
    let p = m.lower.join(name);
    std::fs::write(&p, "data\n").unwrap();
    std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
}

#[test]
fn squash_to_uid_and_gid() {
    let mut m = DeltaMount::new("squash", "squash_to_uid=1234,squash_to_gid=4321");
    lower_file(&m, "f", 1000, 1000);
    m.mount();
    let md = std::fs::metadata(m.p("f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 4321));
    let root = std::fs::metadata(&m.mnt).unwrap();
    assert_eq!((root.uid(), root.gid()), (1234, 4321));
}

#[test]
fn squash_to_root() {
    let mut m = DeltaMount::new("squashroot", "squash_to_root");
    lower_file(&m, "f", 1000, 2000);
    m.mount();
    let md = std::fs::metadata(m.p("f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
}

#[test]
fn uid_and_gid_mapping_both_ways() {
    // HOST:TO:LEN as fuse-overlayfs reads it: disk 100000.. shows as 0.. in the mount.
    let mut m = DeltaMount::new(
        "idmap",
        "uidmapping=100000:0:65536,gidmapping=200000:0:65536",
    );
    lower_file(&m, "mapped", 100007, 200009);
    lower_file(&m, "unmapped", 5, 5);
    m.mount();
    let md = std::fs::metadata(m.p("mapped")).unwrap();
    assert_eq!((md.uid(), md.gid()), (7, 9), "disk ids shown as mount ids");
    let md = std::fs::metadata(m.p("unmapped")).unwrap();
    assert_eq!(
        (md.uid(), md.gid()),
        (65534, 65534),
        "ids outside the map show as the overflow id, as fuse-overlayfs does"
    );
    // Created as root in the mount: root of the mapping on disk.
    std::fs::write(m.p("new"), "x").unwrap();
    let disk = std::fs::metadata(m.upper.join("new")).unwrap();
    assert_eq!((disk.uid(), disk.gid()), (100000, 200000));
    // chown inside the mount goes through the map; outside the map it writes the
    // overflow id, as fuse-overlayfs does.
    std::os::unix::fs::chown(m.p("new"), Some(42), Some(43)).unwrap();
    let disk = std::fs::metadata(m.upper.join("new")).unwrap();
    assert_eq!((disk.uid(), disk.gid()), (100042, 200043));
    std::os::unix::fs::chown(m.p("new"), Some(70000), None).unwrap();
    let disk = std::fs::metadata(m.upper.join("new")).unwrap();
    assert_eq!(disk.uid(), 65534);
}

#[test]
fn static_nlink_reports_one_for_directories() {
    let mut m = DeltaMount::new("nlink", "static_nlink");
    std::fs::create_dir_all(m.lower.join("d/sub1")).unwrap();
    std::fs::create_dir_all(m.lower.join("d/sub2")).unwrap();
    m.mount();
    assert_eq!(std::fs::metadata(m.p("d")).unwrap().nlink(), 1);
    let mut plain = DeltaMount::new("nlink-plain", "");
    std::fs::create_dir_all(plain.lower.join("d/sub1")).unwrap();
    std::fs::create_dir_all(plain.lower.join("d/sub2")).unwrap();
    plain.mount();
    assert_eq!(std::fs::metadata(plain.p("d")).unwrap().nlink(), 4);
}

#[test]
fn ro_with_an_upper_refuses_writes_and_shows_the_upper() {
    let mut m = DeltaMount::new("ro", "ro");
    lower_file(&m, "f", 0, 0);
    std::fs::write(m.upper.join("up"), "upper\n").unwrap();
    m.mount();
    assert_eq!(std::fs::read_to_string(m.p("up")).unwrap(), "upper\n");
    let e = std::fs::write(m.p("f"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    let e = std::fs::create_dir(m.p("newdir")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    let e = std::fs::set_permissions(m.p("f"), std::fs::Permissions::from_mode(0o600)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    assert!(
        std::fs::read_dir(&m.upper).unwrap().count() == 1,
        "nothing written to the upper"
    );
}
