//! `strata push`: for each layer, a blob the repository already has (HEAD) is skipped, one a
//! sibling repository of the same registry has is mounted, anything else is gzipped
//! deterministically and uploaded (POST, then PUT with the digest); then the config and an
//! OCI manifest under the tag.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};

use crate::err;
use crate::store::Store;
use crate::util::{Ctx, Result};

use super::docker_archive::short;
use super::known::{self, Form};
use super::media::{self, Descriptor};
use super::progress::{Bar, Progress};
use super::reference::RemoteRef;
use super::registry::{Body, Client, Options};
use super::write::{open_tar_at, SaveImage};
use super::Scratch;

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct Pushed {
    /// Manifest digest.
    pub digest: String,
    /// Where it went.
    pub reference: String,
    /// Layers in the image.
    pub layers: usize,
    /// Layers uploaded.
    pub uploaded: usize,
    /// Layers the repository already had.
    pub skipped: usize,
    /// Layers mounted from another repository.
    pub mounted: usize,
    /// Bytes uploaded.
    pub bytes: u64,
}

/// Push the stored image `image` to `target`.
pub fn push(store: &Store, image: &str, target: &str, o: &Options) -> Result<Pushed> {
    let r = RemoteRef::parse(target)?;
    if r.digest.is_some() {
        return Err(err!(
            "push to a tag, not a digest: the digest comes from what is pushed"
        ));
    }
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let img: SaveImage = {
        let _lock = store.lock_shared()?;
        super::save_image(store, image)?
    };
    let progress = Progress::new(o.quiet);
    let mut client = Client::new(&r, o, true);
    let location = r.location();
    let mut out = Pushed {
        reference: r.to_string(),
        layers: img.layers.len(),
        ..Default::default()
    };
    let mut descriptors = Vec::new();
    for hex in &img.layers {
        let bar = progress.bar(&short(hex), None);
        let (form, how) = push_layer(store, &img, &mut client, &r, hex, &bar)?;
        match how {
            How::Skipped => out.skipped += 1,
            How::Mounted => out.mounted += 1,
            How::Uploaded => {
                out.uploaded += 1;
                out.bytes += form.size;
            }
        }
        bar.finish(match how {
            How::Skipped => "exists",
            How::Mounted => "mounted",
            How::Uploaded => "pushed",
        });
        {
            let _lock = store.lock_exclusive()?;
            known::remember(store, hex, &form, &location)?;
        }
        descriptors.push(Descriptor {
            media_type: form.media_type.clone(),
            digest: form.digest.clone(),
            size: form.size as i64,
            ..Default::default()
        });
    }
    let config_digest = format!("sha256:{}", img.config_hex);
    if !client.has_blob(&config_digest)? {
        let loc = client.start_upload()?;
        client.put_blob(
            &loc,
            &config_digest,
            Body::Bytes(&img.config, "application/octet-stream"),
        )?;
    }
    let manifest = super::oci_layout::manifest_for(&img, descriptors);
    let bytes =
        serde_json::to_vec(&manifest).map_err(|e| err!("cannot encode the manifest: {e}"))?;
    out.digest = client.put_manifest(&tag, &bytes, media::OCI_MANIFEST)?;
    Ok(out)
}

enum How {
    Skipped,
    Mounted,
    Uploaded,
}

fn push_layer(
    store: &Store,
    img: &SaveImage,
    client: &mut Client,
    r: &RemoteRef,
    hex: &str,
    bar: &Bar,
) -> Result<(Form, How)> {
    let location = r.location();
    let mut forms = known::forms(store, hex);
    // strata's own gzip first: it is the one a fresh upload would make again.
    forms.sort_by_key(|f| !f.ours);
    for f in &forms {
        bar.message("checking");
        if client.has_blob(&f.digest)? {
            return Ok((f.clone(), How::Skipped));
        }
    }
    let mut pending_upload = None;
    let prefix = format!("{}/", r.registry);
    'forms: for f in &forms {
        for loc in &f.locations {
            let Some(repo) = loc.strip_prefix(&prefix) else {
                continue;
            };
            if *loc == location {
                continue;
            }
            bar.message("mounting");
            match client.mount(&f.digest, repo) {
                Ok(None) => return Ok((f.clone(), How::Mounted)),
                Ok(Some(upload)) => {
                    pending_upload = Some(upload);
                    break 'forms;
                }
                Err(e) => tracing::debug!("mount of {} from {repo} failed: {e}", f.digest),
            }
        }
    }
    // Compress our own form (deterministic), then upload it unless it is already there.
    let scratch = Scratch(store.staging_dir("push")?);
    let gz = scratch.0.join("layer.tar.gz");
    let tar = open_tar_at(&img.layer_file(store, hex), hex)?;
    // The bar counts the tar read into gzip: the compression is most of a push's time.
    bar.phase("compressing", tar.metadata().map_or(0, |m| m.len()));
    let out = File::create(&gz).ctx(|| format!("cannot create {}", gz.display()))?;
    let mut hashed_out = HashingWriter::new(BufWriter::with_capacity(1 << 16, out));
    crate::layer::compression::gzip(
        bar.reader(BufReader::with_capacity(1 << 16, tar)),
        &mut hashed_out,
    )?;
    hashed_out
        .inner
        .flush()
        .ctx(|| format!("cannot write {}", gz.display()))?;
    let (digest_hex, size) = hashed_out.finish();
    let form = Form {
        digest: format!("sha256:{digest_hex}"),
        size,
        media_type: media::OCI_LAYER_GZIP.into(),
        locations: Vec::new(),
        ours: true,
    };
    if pending_upload.is_none() && client.has_blob(&form.digest)? {
        return Ok((form, How::Skipped));
    }
    let upload = match pending_upload {
        Some(u) => u,
        None => client.start_upload()?,
    };
    bar.phase("pushing", size);
    client.put_blob(&upload, &form.digest, Body::File(&gz, bar))?;
    Ok((form, How::Uploaded))
}

/// A writer that hashes and counts what goes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        use sha2::Digest;
        HashingWriter {
            inner,
            hasher: sha2::Sha256::new(),
            count: 0,
        }
    }
    fn finish(self) -> (String, u64) {
        use sha2::Digest;
        (crate::util::hex(&self.hasher.finalize()), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
