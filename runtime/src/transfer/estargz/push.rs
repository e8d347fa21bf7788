//! `strata push --format estargz`: every layer re-framed as eStargz (see [`super::write`]),
//! the config's diff_ids changed to match, and each layer descriptor annotated with its TOC
//! digest and uncompressed size, as stargz-snapshotter's converter does.

use std::collections::BTreeMap;

use crate::err;
use crate::store::Store;
use crate::util::Result;

use super::super::docker_archive::short;
use super::super::media::{self, Descriptor, Manifest};
use super::super::progress::Progress;
use super::super::push::Pushed;
use super::super::reference::RemoteRef;
use super::super::registry::{Body, Client, Options};
use super::super::Scratch;
use super::{TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION};

/// Push the stored image `image` to `target` with eStargz layers.
pub fn push(store: &Store, image: &str, target: &str, o: &Options) -> Result<Pushed> {
    let r = RemoteRef::parse(target)?;
    if r.digest.is_some() {
        return Err(err!(
            "push to a tag, not a digest: the digest comes from what is pushed"
        ));
    }
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let img = {
        let _lock = store.lock_shared()?;
        super::super::save_image(store, image)?
    };
    let progress = Progress::new(o.quiet);
    let mut client = Client::new(&r, o, true);
    let mut out = Pushed {
        reference: r.to_string(),
        layers: img.layers.len(),
        ..Default::default()
    };
    let scratch = Scratch(store.staging_dir("push")?);
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for hex in &img.layers {
        let bar = progress.bar(&short(hex), None);
        bar.message("converting");
        let blob = scratch.0.join(format!("{hex}.esgz"));
        let w = super::write::convert(&img.layer_file(store, hex), &blob)?;
        if client.has_blob(&w.digest)? {
            out.skipped += 1;
            bar.finish("exists");
        } else {
            let upload = client.start_upload()?;
            bar.phase("pushing", w.size);
            client.put_blob(&upload, &w.digest, Body::File(&blob, &bar))?;
            out.uploaded += 1;
            out.bytes += w.size;
            bar.finish("pushed");
        }
        let _ = std::fs::remove_file(&blob);
        let mut ann = BTreeMap::new();
        ann.insert(TOC_DIGEST_ANNOTATION.to_string(), w.toc_digest.clone());
        ann.insert(
            UNCOMPRESSED_SIZE_ANNOTATION.to_string(),
            w.uncompressed.to_string(),
        );
        descriptors.push(Descriptor {
            media_type: media::OCI_LAYER_GZIP.into(),
            digest: w.digest.clone(),
            size: w.size as i64,
            annotations: Some(ann),
            ..Default::default()
        });
        diff_ids.push(serde_json::Value::String(w.diff_id));
    }
    let mut cfg: serde_json::Value = serde_json::from_slice(&img.config)
        .map_err(|e| err!("the stored image config is not JSON ({e}): the store is damaged"))?;
    let rootfs = cfg
        .get_mut("rootfs")
        .and_then(|r| r.as_object_mut())
        .ok_or_else(|| err!("the stored image config has no rootfs: the store is damaged"))?;
    rootfs.insert("diff_ids".into(), serde_json::Value::Array(diff_ids));
    let config = serde_json::to_vec(&cfg).map_err(|e| err!("cannot encode the config: {e}"))?;
    let config_digest = format!("sha256:{}", crate::util::sha256_hex(&config));
    if !client.has_blob(&config_digest)? {
        let loc = client.start_upload()?;
        client.put_blob(
            &loc,
            &config_digest,
            Body::Bytes(&config, "application/octet-stream"),
        )?;
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: media::OCI_CONFIG.into(),
            digest: config_digest,
            size: config.len() as i64,
            ..Default::default()
        },
        layers: descriptors,
        annotations: None,
    };
    let bytes =
        serde_json::to_vec(&manifest).map_err(|e| err!("cannot encode the manifest: {e}"))?;
    out.digest = client.put_manifest(&tag, &bytes, media::OCI_MANIFEST)?;
    Ok(out)
}
