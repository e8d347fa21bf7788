//! The images the test registry serves: manifests, indexes, configs and layers.

use super::*;

/// A registry repository's content: manifests by tag or digest, blobs by digest.
#[derive(Clone, Default)]
pub(crate) struct Repo {
    pub(crate) manifests: HashMap<String, (String, Vec<u8>)>,
    pub(crate) blobs: HashMap<String, Vec<u8>>,
}

impl Repo {
    pub(crate) fn manifest(&mut self, tag: &str, media_type: &str, body: Vec<u8>) -> String {
        let d = digest(&body);
        self.manifests
            .insert(d.clone(), (media_type.into(), body.clone()));
        self.manifests
            .insert(tag.to_string(), (media_type.into(), body));
        d
    }

    pub(crate) fn blob(&mut self, body: Vec<u8>) -> String {
        let d = digest(&body);
        self.blobs.insert(d.clone(), body);
        d
    }

    /// The standard answer to `req` for repository `x`.
    pub(crate) fn answer(&self, req: &Req) -> Reply {
        let p = req.path.split('?').next().unwrap_or("");
        if p == "/v2/" || p == "/v2" {
            return Reply::Full(
                200,
                h(&[("Content-Type", "application/json")]),
                b"{}".into(),
            );
        }
        if let Some(r) = p.strip_prefix("/v2/x/manifests/") {
            if let Some((ct, body)) = self.manifests.get(r) {
                return Reply::Full(
                    200,
                    h(&[
                        ("Content-Type", ct),
                        ("Docker-Content-Digest", &digest(body)),
                    ]),
                    body.clone(),
                );
            }
        }
        if let Some(d) = p.strip_prefix("/v2/x/blobs/") {
            if let Some(body) = self.blobs.get(d) {
                return Reply::Full(
                    200,
                    h(&[("Content-Type", "application/octet-stream")]),
                    body.clone(),
                );
            }
        }
        Reply::Full(
            404,
            h(&[("Content-Type", "application/json")]),
            br#"{"errors":[{"code":"NOT_FOUND","message":"not found"}]}"#.to_vec(),
        )
    }
}

pub(crate) fn config_json(diff_ids: &[String]) -> Vec<u8> {
    let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"{{"architecture":"{}","os":"linux","config":{{"Env":["PATH=/bin"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        arch(),
        ids.join(",")
    )
    .into_bytes()
}

pub(crate) fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A descriptor as JSON.
pub(crate) fn desc(media_type: &str, digest: &str, size: u64) -> String {
    format!(r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{size}}}"#)
}

pub(crate) fn manifest_json(config: &str, layers: &[String]) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{config},"layers":[{}]}}"#,
        layers.join(",")
    )
    .into_bytes()
}

pub(crate) fn index_json(entries: &[String]) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes()
}

pub(crate) fn platform_entry(
    media_type: &str,
    digest: &str,
    size: usize,
    os: &str,
    arch: &str,
) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{size},"platform":{{"os":"{os}","architecture":"{arch}"}}}}"#
    )
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    g.write_all(data).unwrap();
    g.finish().unwrap()
}

/// An image in `repo` under `tag`: one gzip layer per tar; the manifest digest.
pub(crate) fn add_image(repo: &mut Repo, tag: &str, tars: &[Vec<u8>]) -> String {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for t in tars {
        let gz = gzip(t);
        let len = gz.len() as u64;
        layers.push(desc(LAYER_GZIP, &repo.blob(gz), len));
        diff_ids.push(digest(t));
    }
    let cfg = config_json(&diff_ids);
    let len = cfg.len() as u64;
    let c = desc(OCI_CONFIG, &repo.blob(cfg), len);
    repo.manifest(tag, OCI_MANIFEST, manifest_json(&c, &layers))
}

/// A tar with the names and link names written raw (tar::Builder refuses `..`).
pub(crate) fn tar_raw(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(if *kind == tar::EntryType::Symlink {
            0o777
        } else {
            0o644
        });
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(*kind);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub(crate) fn file<'a>(
    name: &'a str,
    data: &'a [u8],
) -> (&'a str, tar::EntryType, &'a [u8], &'a str) {
    (name, tar::EntryType::Regular, data, "")
}

/// A busybox rootfs tar (Debian's busybox-static).
pub(crate) fn busybox_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(1_700_000_000);
    dir.set_uid(0);
    dir.set_gid(0);
    for d in ["bin", "etc", "tmp"] {
        b.append_data(&mut dir.clone(), d, &[][..]).unwrap();
    }
    let bb = std::fs::read(busybox()).unwrap();
    let mut fh = tar::Header::new_gnu();
    fh.set_mode(0o755);
    fh.set_size(bb.len() as u64);
    fh.set_mtime(1_700_000_000);
    fh.set_uid(0);
    fh.set_gid(0);
    b.append_data(&mut fh, "bin/busybox", &bb[..]).unwrap();
    for a in ["sh", "echo", "cat", "true"] {
        let mut s = tar::Header::new_gnu();
        s.set_entry_type(tar::EntryType::Symlink);
        s.set_mode(0o777);
        s.set_size(0);
        s.set_mtime(1_700_000_000);
        s.set_uid(0);
        s.set_gid(0);
        b.append_link(&mut s, format!("bin/{a}"), "busybox")
            .unwrap();
    }
    b.into_inner().unwrap()
}
