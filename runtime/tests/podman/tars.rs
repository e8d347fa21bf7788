//! Reading the tars podman writes: `export`, and the layers of a `save` docker-archive.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// One tar entry: type, owner, mode, content (symlinks: target).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// f regular, d directory, l symlink, h hard link, ? other.
    pub kind: char,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Permission bits.
    pub mode: u32,
    /// Content (symlinks: the target).
    pub data: Vec<u8>,
}

/// The entries of a tar (read from `r`) by path without `./` and trailing `/`.
pub fn tar_entries(r: impl Read) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(r);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let path = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Regular => 'f',
            tar::EntryType::Link => 'h',
            _ => '?',
        };
        let mut data = Vec::new();
        if kind == 'l' {
            data = e.link_name_bytes().unwrap_or_default().into_owned();
        } else {
            e.read_to_end(&mut data).unwrap();
        }
        let entry = Entry {
            kind,
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mode: h.mode().unwrap() & 0o7777,
            data,
        };
        out.insert(path, entry);
    }
    out
}

/// The layer tars of a docker-archive from `podman save`, bottom first.
pub fn saved_layers(archive: &Path) -> Vec<BTreeMap<String, Entry>> {
    let outer = tar_entries(std::fs::File::open(archive).unwrap());
    let manifest: serde_json::Value =
        serde_json::from_slice(&outer.get("manifest.json").expect("manifest.json").data).unwrap();
    manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let name = l.as_str().unwrap();
            tar_entries(
                outer
                    .get(name)
                    .expect("layer in the archive")
                    .data
                    .as_slice(),
            )
        })
        .collect()
}

/// The entry at `path`, which must be there.
pub fn file(tar: &BTreeMap<String, Entry>, path: &str) -> Entry {
    tar.get(path)
        .unwrap_or_else(|| {
            panic!(
                "{path} missing from the tar: {:?}",
                tar.keys().collect::<Vec<_>>()
            )
        })
        .clone()
}

/// Assert owner and content of a regular file in a tar.
pub fn assert_tar_file(tar: &BTreeMap<String, Entry>, path: &str, owner: (u64, u64), data: &str) {
    let e = file(tar, path);
    assert_eq!(
        (
            e.kind,
            e.uid,
            e.gid,
            String::from_utf8_lossy(&e.data).into_owned()
        ),
        ('f', owner.0, owner.1, data.to_string()),
        "{path} in the tar (kind, uid, gid, content)"
    );
}
