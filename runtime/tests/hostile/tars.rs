//! Building hostile tar archives entry by entry.

use super::*;

#[derive(Clone)]
pub(crate) struct E {
    pub(crate) name: Vec<u8>,
    pub(crate) kind: tar::EntryType,
    pub(crate) data: Vec<u8>,
    pub(crate) link: Vec<u8>,
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) dev: (u32, u32),
}

pub(crate) fn f(name: &str, data: &[u8]) -> E {
    E {
        name: name.as_bytes().to_vec(),
        kind: tar::EntryType::Regular,
        data: data.to_vec(),
        link: Vec::new(),
        mode: 0o644,
        uid: 0,
        dev: (0, 0),
    }
}

pub(crate) fn d(name: &str) -> E {
    E {
        kind: tar::EntryType::Directory,
        mode: 0o755,
        ..f(name, b"")
    }
}

pub(crate) fn sym(name: &str, target: &str) -> E {
    E {
        kind: tar::EntryType::Symlink,
        link: target.as_bytes().to_vec(),
        mode: 0o777,
        ..f(name, b"")
    }
}

pub(crate) fn hard(name: &str, target: &str) -> E {
    E {
        kind: tar::EntryType::Link,
        link: target.as_bytes().to_vec(),
        ..f(name, b"")
    }
}

pub(crate) fn dev(name: &str, kind: tar::EntryType, major: u32, minor: u32) -> E {
    E {
        kind,
        dev: (major, minor),
        mode: 0o666,
        ..f(name, b"")
    }
}

/// A GNU tar with the names and link names written raw (tar::Builder refuses `..`).
/// Names longer than the header field go through a PAX `path` record.
pub(crate) fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.uid);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(e.kind);
        if matches!(e.kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(e.dev.0).unwrap();
            h.set_device_minor(e.dev.1).unwrap();
        }
        if e.name.len() > 100 {
            b.append_pax_extensions([("path", &e.name[..])]).unwrap();
        } else {
            h.as_old_mut().name[..e.name.len()].copy_from_slice(&e.name);
        }
        h.as_old_mut().linkname[..e.link.len()].copy_from_slice(&e.link);
        h.set_cksum();
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    g.write_all(data).unwrap();
    g.finish().unwrap()
}

pub(crate) fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 1).unwrap()
}

/// Bytes of a plain tar whose second entry is named by the first (a fixed, valid tar).
pub(crate) fn good_tar() -> Vec<u8> {
    tar_of(&[d("etc/"), f("etc/hosts", &vec![b'h'; 5000])])
}

pub(crate) fn abs(p: &Path) -> String {
    p.display().to_string()
}
