//! `strata pull`: manifest (or index, then this platform's manifest), config, and only the
//! layers the store lacks. Each layer is verified (blob digest and diff_id) in the staging
//! area and published whole, so an interrupted pull leaves no half layer and a retry goes on
//! from the layers already complete.

use crate::err;
use crate::image::Reference;
use crate::store::Store;
use crate::util::Result;

use super::docker_archive::short;
use super::ingest::{have_layer, parse_config, read_verified, Ingest};
use super::known::{self, Form};
use super::media::{self, digest_hex, Document};
use super::progress::Progress;
use super::reference::RemoteRef;
use super::registry::{Client, Options};

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// Image id ("sha256:<config hex>").
    pub id: String,
    /// Local tag, when the reference had one.
    pub tag: Option<String>,
    /// Manifest digest.
    pub digest: String,
    /// Layers in the image.
    pub layers: usize,
    /// Layers downloaded.
    pub fetched: usize,
    /// Compressed bytes downloaded.
    pub bytes: u64,
}

/// Pull `reference` into the store.
pub fn pull(store: &Store, reference: &str, o: &Options) -> Result<Pulled> {
    pull_opts(store, reference, o, false)
}

/// Whether `image` names its registry (`host.name/...`, `host:port/...`, `localhost/...`):
/// only those are pulled when missing; a short name must be in the store (no default
/// registry is reachable from here, and a typo must not turn into a download).
pub fn names_registry(image: &str) -> bool {
    image
        .split_once('/')
        .is_some_and(|(host, _)| host.contains(['.', ':']) || host == "localhost")
}

/// Pull `reference`; with `lazy`, eStargz layers are laid out from their TOC and fetched
/// on demand by the container's union (transfer::lazy), the others pulled whole. Without
/// it, layers left lazy by an earlier pull are completed.
pub fn pull_opts(store: &Store, reference: &str, o: &Options, lazy: bool) -> Result<Pulled> {
    let r = RemoteRef::parse(reference)?;
    let tag = match &r.tag {
        Some(t) => Some(Reference::parse(&format!("{}:{t}", r.local_name()))?),
        None => None,
    };
    if tag.is_some() {
        // A tag table that cannot be written fails the pull now, not after the download.
        crate::image::read_repositories(store)?;
    }
    let progress = Progress::new(o.quiet);
    let mut client = Client::new(&r, o, false);
    let (mut bytes, mut ct) = client.manifest(r.manifest_ref())?;
    let mut digest = format!("sha256:{}", crate::util::sha256_hex(&bytes));
    let manifest = match media::parse_document(&bytes, &ct)? {
        Document::Manifest(m) => m,
        Document::Index(idx) => {
            let d = media::select_platform(&idx, &r.to_string())?.clone();
            digest_hex(&d.digest)
                .map_err(|e| err!("{r}: the index entry for this platform: {e}"))?;
            (bytes, ct) = client.manifest(&d.digest)?;
            digest = d.digest.clone();
            match media::parse_document(&bytes, &ct)? {
                Document::Manifest(m) => m,
                Document::Index(_) => {
                    return Err(err!(
                        "{r}: the index for this platform points at another index: refusing nested indexes"
                    ))
                }
            }
        }
    };
    check_manifest(&manifest, &r.to_string())?;
    let size = |d: &media::Descriptor| u64::try_from(d.size).ok().filter(|s| *s > 0);
    let config = read_verified(
        client.blob(&manifest.config.digest, size(&manifest.config))?,
        &manifest.config.digest,
        size(&manifest.config),
        &format!("image config {}", manifest.config.digest),
    )?;
    let cfg = parse_config(&config)?;
    if cfg.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(err!(
            "{r}: the manifest lists {} layers but the config has {} diff_ids: the image is corrupt",
            manifest.layers.len(),
            cfg.rootfs.diff_ids.len()
        ));
    }
    let location = r.location();
    let mut fetched = 0;
    let mut transferred = 0u64;
    for (l, diff_id) in manifest.layers.iter().zip(&cfg.rootfs.diff_ids) {
        let diff_hex = digest_hex(diff_id)?.to_string();
        let form = Form {
            digest: l.digest.clone(),
            size: size(l).unwrap_or(0),
            media_type: known::oci_layer_type(&l.media_type),
            locations: Vec::new(),
            ours: false,
        };
        let bar = progress.bar(&short(&l.digest), size(l));
        if have_layer(store, &diff_hex) {
            bar.finish("exists");
        } else if crate::layer::lazy::is_lazy(store, &diff_hex) {
            if lazy {
                bar.finish("lazy");
            } else {
                bar.message("completing");
                let n = super::lazy::complete(store, &mut client, &diff_hex)?;
                fetched += 1;
                transferred += size(l).unwrap_or(0);
                bar.finish(&format!("completed ({n} files)"));
            }
        } else if lazy && super::lazy::prepare_layer(store, &mut client, l, &diff_hex, o.insecure)?
        {
            bar.finish("lazy");
        } else {
            bar.message("pulling");
            let mut ingest = Ingest::new(store);
            let body = client.blob(&l.digest, size(l))?;
            let counted = bar.reader(body);
            ingest.add_layer(
                counted,
                diff_id,
                Some((&l.digest, size(l))),
                &format!("layer {}", l.digest),
            )?;
            ingest.commit()?;
            fetched += 1;
            transferred += size(l).unwrap_or(0);
            bar.finish("done");
        }
        let _lock = store.lock_exclusive()?;
        crate::layer::mend_info(store, &diff_hex)?;
        known::remember(store, &diff_hex, &form, &location)?;
    }
    let mut ingest = Ingest::new(store);
    ingest.add_image(config, tag.iter().cloned().collect())?;
    let stored = ingest.commit()?;
    let id = stored
        .first()
        .map(|s| s.id.clone())
        .ok_or_else(|| err!("the pulled image was not stored"))?;
    Ok(Pulled {
        id,
        tag: tag.map(|t| t.to_string()),
        digest,
        layers: manifest.layers.len(),
        fetched,
        bytes: transferred,
    })
}

/// Everything a manifest names is checked before anything is fetched: digests (they name
/// files and URLs), media types, and a config size strata would hold in memory.
fn check_manifest(m: &media::Manifest, what: &str) -> Result<()> {
    digest_hex(&m.config.digest).map_err(|e| err!("{what}: the image config: {e}"))?;
    // Artifacts (helm charts, signatures, SBOMs) travel in image manifests too; stored as
    // an image they would be an image without a usable config.
    if !matches!(
        m.config.media_type.as_str(),
        "" | media::OCI_CONFIG | media::DOCKER_CONFIG
    ) {
        return Err(err!(
            "{what} is not a container image (its config has media type {:?}): strata pulls images only",
            m.config.media_type
        ));
    }
    if m.config.size > super::ingest::MAX_JSON as i64 {
        return Err(err!(
            "{what}: the image config is {} bytes, more than the {} strata accepts: refusing it",
            m.config.size,
            super::ingest::MAX_JSON
        ));
    }
    for l in &m.layers {
        digest_hex(&l.digest).map_err(|e| err!("{what}: layer: {e}"))?;
        if !media::is_layer(&l.media_type) {
            return Err(err!(
                "{what}: layer {} has media type {:?}, which strata cannot unpack",
                l.digest,
                l.media_type
            ));
        }
    }
    Ok(())
}
