//! Putting verified images into the store. Everything is checked and staged first, with no
//! lock held; only then, under the exclusive store lock, layers are published and configs and
//! tags written. A failure before that point leaves the store exactly as it was.

use std::collections::HashSet;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;

use crate::err;
use crate::image::{self, ImageConfig, Reference};
use crate::layer::{self, Staged};
use crate::store::Store;
use crate::util::{sha256_hex, write_atomic, Ctx, HashingReader, Result};

use super::media::{check_diff_ids, digest_hex};
use crate::layer::compression;

/// Image configs larger than this are refused (real ones are a few KiB).
pub const MAX_JSON: u64 = 8 << 20;

/// A layer's tar written to the staging area for a layer whose tree the store already has.
struct TarOnly {
    dir: PathBuf,
    hex: String,
}

impl Drop for TarOnly {
    fn drop(&mut self) {
        let _ = crate::store::remove_tree(&self.dir);
    }
}

/// An image whose config and layers are verified, waiting to be committed.
struct Pending {
    config: Vec<u8>,
    hex: String,
    tags: Vec<Reference>,
}

/// What a commit did for one image.
#[derive(Debug, Clone)]
pub struct Stored {
    /// "sha256:<hex>" (the config digest, as docker and podman show it).
    pub id: String,
    /// Tags now pointing at it.
    pub tags: Vec<String>,
}

/// A batch of layers and images to add to the store at once.
pub struct Ingest<'s> {
    store: &'s Store,
    staged: Vec<Staged>,
    tars: Vec<TarOnly>,
    ready: HashSet<String>,
    images: Vec<Pending>,
    /// Layers found in the store, whose metadata a commit mends if damaged.
    existing: Vec<String>,
    /// Bytes of layers extracted (not counting those already stored).
    pub new_layers: usize,
    /// Layers that were already in the store.
    pub existing_layers: usize,
}

/// Whether the store has a layer with its tree, metadata and kept tar.
pub fn have_layer(store: &Store, hex: &str) -> bool {
    store.layer_dir(hex).is_dir()
        && store.layers_dir().join(format!("{hex}.json")).is_file()
        && layer::tar_path(store, hex).is_file()
}

/// Parse and check an image config (its diff_ids will name directories).
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig> {
    let cfg: ImageConfig = serde_json::from_slice(bytes)
        .map_err(|e| err!("the image config is not valid ({e}): the source is corrupt"))?;
    check_diff_ids(&cfg)?;
    Ok(cfg)
}

/// Read `reader` to its end and check its sha256 (and size when given).
pub fn verify_digest(reader: impl Read, digest: &str, size: Option<u64>, what: &str) -> Result<()> {
    let want = digest_hex(digest)?;
    let mut h = HashingReader::new(reader);
    io::copy(&mut h, &mut io::sink()).ctx(|| format!("cannot read {what}"))?;
    check_size(h.count, size, what)?;
    let got = h.finish();
    if got != want {
        return Err(err!(
            "{what}: content has digest sha256:{got}, expected {digest}: the source is corrupt or was tampered with"
        ));
    }
    Ok(())
}

fn check_size(got: u64, want: Option<u64>, what: &str) -> Result<()> {
    match want {
        Some(w) if w != got => Err(err!(
            "{what}: {got} bytes, the manifest says {w}: the source is corrupt or truncated"
        )),
        _ => Ok(()),
    }
}

/// Read a small JSON blob whole, checking its digest and size.
pub fn read_verified(
    reader: impl Read,
    digest: &str,
    size: Option<u64>,
    what: &str,
) -> Result<Vec<u8>> {
    let want = digest_hex(digest)?;
    let mut out = Vec::new();
    reader
        .take(MAX_JSON + 1)
        .read_to_end(&mut out)
        .ctx(|| format!("cannot read {what}"))?;
    if out.len() as u64 > MAX_JSON {
        return Err(err!("{what} is larger than {MAX_JSON} bytes: refusing it"));
    }
    check_size(out.len() as u64, size, what)?;
    let got = sha256_hex(&out);
    if got != want {
        return Err(err!(
            "{what}: content has digest sha256:{got}, expected {digest}: the source is corrupt or was tampered with"
        ));
    }
    Ok(out)
}

impl<'s> Ingest<'s> {
    /// An empty batch for `store`.
    pub fn new(store: &'s Store) -> Ingest<'s> {
        Ingest {
            store,
            staged: Vec::new(),
            tars: Vec::new(),
            ready: HashSet::new(),
            images: Vec::new(),
            existing: Vec::new(),
            new_layers: 0,
            existing_layers: 0,
        }
    }

    /// Whether a layer is in the store or already staged in this batch.
    pub fn has_layer(&self, hex: &str) -> bool {
        self.ready.contains(hex)
            || have_layer(self.store, hex)
            || crate::layer::lazy::is_lazy(self.store, hex)
    }

    /// Add a layer blob (tar, gzip or zstd) that must have diff_id `diff_id`, and, when
    /// `blob` is given, that compressed digest and size. A layer already stored is only
    /// verified, never extracted twice.
    pub fn add_layer(
        &mut self,
        reader: impl Read,
        diff_id: &str,
        blob: Option<(&str, Option<u64>)>,
        what: &str,
    ) -> Result<()> {
        let diff_hex = digest_hex(diff_id)?.to_string();
        let mut hashed = HashingReader::new(reader);
        let got_diff = if self.has_layer(&diff_hex) {
            let mut plain = HashingReader::new(compression::decompressed(&mut hashed)?);
            io::copy(&mut plain, &mut io::sink()).ctx(|| format!("cannot read {what}"))?;
            self.existing_layers += 1;
            plain.finish()
        } else if self.store.layer_dir(&diff_hex).is_dir() {
            // The tree is there but not its tar (an older store): keep the tar only.
            let dir = self.store.staging_dir("tar")?;
            let only = TarOnly {
                dir,
                hex: diff_hex.clone(),
            };
            let path = only.dir.join("layer.tar");
            let f =
                std::fs::File::create(&path).ctx(|| format!("cannot create {}", path.display()))?;
            let mut out = BufWriter::with_capacity(1 << 16, f);
            let mut plain = HashingReader::new(compression::decompressed(&mut hashed)?);
            io::copy(&mut plain, &mut out).ctx(|| format!("cannot read {what}"))?;
            out.flush()
                .ctx(|| format!("cannot write {}", path.display()))?;
            let got = plain.finish();
            if got == diff_hex {
                self.tars.push(only);
            }
            self.existing_layers += 1;
            got
        } else {
            let staged = layer::stage(self.store, &mut hashed).map_err(|e| err!("{what}: {e}"))?;
            let got = staged.diff_hex.clone();
            if got == diff_hex {
                self.staged.push(staged);
                self.new_layers += 1;
            }
            got
        };
        if got_diff == diff_hex && self.store.layer_dir(&diff_hex).is_dir() {
            self.existing.push(diff_hex.clone());
        }
        if got_diff != diff_hex {
            return Err(err!(
                "{what}: the uncompressed layer has digest sha256:{got_diff} but the image config lists {diff_id}: the source is corrupt"
            ));
        }
        if let Some((digest, size)) = blob {
            // Whatever follows the end of the compressed stream still counts.
            io::copy(&mut hashed, &mut io::sink()).ctx(|| format!("cannot read {what}"))?;
            check_size(hashed.count, size, what)?;
            let got = hashed.finish();
            if got != digest_hex(digest)? {
                return Err(err!(
                    "{what}: blob has digest sha256:{got}, expected {digest}: the source is corrupt or was tampered with"
                ));
            }
        }
        self.ready.insert(diff_hex);
        Ok(())
    }

    /// Add an image: its config bytes (already digest-checked by the caller when they came
    /// with a digest) and the tags to point at it. Every layer must have been added.
    pub fn add_image(&mut self, config: Vec<u8>, tags: Vec<Reference>) -> Result<()> {
        let cfg = parse_config(&config)?;
        for h in cfg.layer_hexes() {
            if !self.has_layer(&h) {
                return Err(err!(
                    "layer sha256:{h} of the image config was not provided: the source is incomplete"
                ));
            }
        }
        let hex = sha256_hex(&config);
        self.images.push(Pending { config, hex, tags });
        Ok(())
    }

    /// Publish everything under the exclusive store lock.
    pub fn commit(self) -> Result<Vec<Stored>> {
        let _lock = self.store.lock_exclusive()?;
        // Read before anything is published: a tag table that cannot be written leaves no
        // untagged image behind. Images without tags do not need it.
        let tagging = self.images.iter().any(|p| !p.tags.is_empty());
        let mut repos = if tagging {
            image::read_repositories(self.store)?
        } else {
            image::Repositories::new()
        };
        for hex in &self.existing {
            layer::mend_info(self.store, hex)?;
        }
        for s in self.staged {
            layer::publish(self.store, s)?;
        }
        for t in &self.tars {
            let dest = layer::tar_path(self.store, &t.hex);
            if !dest.is_file() {
                let src = t.dir.join("layer.tar");
                std::fs::rename(&src, &dest)
                    .ctx(|| format!("cannot move the layer tar into {}", dest.display()))?;
            }
        }
        let mut out = Vec::new();
        if self.images.is_empty() {
            return Ok(out);
        }
        for p in &self.images {
            let path = self.store.images_dir().join(format!("{}.json", p.hex));
            if !path.exists() {
                // Kept byte for byte, so the image id is the config digest it travelled under.
                write_atomic(&path, &p.config)?;
            }
            let id = format!("sha256:{}", p.hex);
            let mut tags = Vec::new();
            for t in &p.tags {
                repos.insert(t.to_string(), id.clone());
                tags.push(t.to_string());
            }
            out.push(Stored { id, tags });
        }
        if tagging {
            image::write_repositories(self.store, &repos)?;
        }
        Ok(out)
    }
}

/// The stored config bytes of an image and its id hex; the bytes hash to the id.
pub fn config_bytes(store: &Store, id: &str) -> Result<(Vec<u8>, String)> {
    let hex = digest_hex(id)?.to_string();
    let path = store.images_dir().join(format!("{hex}.json"));
    let bytes = std::fs::read(&path).ctx(|| format!("cannot read {}", path.display()))?;
    if sha256_hex(&bytes) != hex {
        // Written by a strata that re-encoded configs: the digest is of the encoded form.
        return Err(err!(
            "image config {} does not match its id: the store is corrupt",
            path.display()
        ));
    }
    Ok((bytes, hex))
}
