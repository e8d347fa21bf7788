//! Images in and out of the store: `load` and `save` (docker-archive, OCI archive and OCI
//! layout directory) and `pull` and `push` (the OCI distribution API). Each format has its
//! own module; [`ingest`] is the one way verified images enter the store.

pub mod auth;
pub mod docker_archive;
pub mod estargz;
pub mod ingest;
pub mod known;
pub mod lazy;
pub mod login;
pub mod media;
pub mod oci_layout;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod source;
pub mod write;

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::err;
use crate::image;
use crate::layer::compression;
use crate::store::{remove_tree, Store};
use crate::util::{Ctx, Result};

pub use ingest::Stored;
use progress::Progress;
use source::{DirSource, Source, TarSource};
use write::{ArchiveWriter, SaveImage};

/// A private directory under the store's tmp/, removed on drop.
pub(crate) struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = remove_tree(&self.0);
    }
}

/// Copy `reader` (an archive, maybe gzip or zstd compressed as a whole) into a scratch file.
fn spool(store: &Store, reader: impl Read) -> Result<(Scratch, PathBuf)> {
    let scratch = Scratch(store.staging_dir("load")?);
    let path = scratch.0.join("archive.tar");
    let mut out = BufWriter::with_capacity(
        1 << 16,
        File::create(&path).ctx(|| format!("cannot create {}", path.display()))?,
    );
    io::copy(&mut compression::decompressed(reader)?, &mut out)
        .ctx(|| "cannot read the archive")?;
    out.flush()
        .ctx(|| format!("cannot write {}", path.display()))?;
    Ok((scratch, path))
}

/// Load every image of an archive (`None` or `-` for stdin): docker-archive, OCI archive or
/// OCI layout directory. Nothing is stored unless everything verifies.
pub fn load(store: &Store, input: Option<&Path>, quiet: bool) -> Result<Vec<Stored>> {
    let progress = Progress::new(quiet);
    let mut _scratch = None;
    let src: Box<dyn Source> = match input.filter(|p| p.as_os_str() != "-") {
        Some(p) if p.is_dir() => Box::new(DirSource::new(p)),
        Some(p) => {
            let mut f = File::open(p).ctx(|| format!("cannot open {}", p.display()))?;
            let mut head = [0u8; 4];
            let n = f
                .read(&mut head)
                .ctx(|| format!("cannot read {}", p.display()))?;
            if compression::detect(&head[..n]) == compression::Compression::None {
                Box::new(TarSource::open(p)?)
            } else {
                let f = File::open(p).ctx(|| format!("cannot open {}", p.display()))?;
                let (s, path) = spool(store, BufReader::new(f))?;
                _scratch = Some(s);
                Box::new(TarSource::open(&path)?)
            }
        }
        None => {
            let (s, path) = spool(store, io::stdin().lock())?;
            _scratch = Some(s);
            Box::new(TarSource::open(&path)?)
        }
    };
    let mut ingest = ingest::Ingest::new(store);
    if docker_archive::detect(src.as_ref()) {
        docker_archive::load(src.as_ref(), &mut ingest, &progress)?;
    } else if oci_layout::detect(src.as_ref()) {
        oci_layout::load(src.as_ref(), &mut ingest, &progress)?;
    } else {
        return Err(err!(
            "not an image archive: no manifest.json (docker-archive) nor oci-layout and index.json (OCI layout)"
        ));
    }
    ingest.commit()
}

/// Archive formats `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `docker save` compatible tar.
    DockerArchive,
    /// OCI image layout in a tar.
    OciArchive,
    /// OCI image layout directory.
    OciDir,
}

impl Format {
    /// Parse `docker-archive`, `oci-archive` or `oci-dir`.
    pub fn parse(s: &str) -> Result<Format> {
        match s {
            "docker-archive" | "docker" => Ok(Format::DockerArchive),
            "oci-archive" | "oci" => Ok(Format::OciArchive),
            "oci-dir" => Ok(Format::OciDir),
            _ => Err(err!(
                "unknown format {s:?}: use docker-archive, oci-archive or oci-dir"
            )),
        }
    }
}

/// Gather what `save` and `push` need of a stored image: config bytes, layers and sizes.
pub fn save_image(store: &Store, what: &str) -> Result<SaveImage> {
    let id = image::resolve(store, what)?;
    let (mut config, mut config_hex) = ingest::config_bytes(store, &id)?;
    let cfg = ingest::parse_config(&config)?;
    let mut layers = cfg.layer_hexes();
    let mut layer_sizes = Vec::new();
    let mut plain = Vec::new();
    for h in layers.iter_mut() {
        if crate::layer::native::native_of(store, h).is_some() {
            // A native layer leaves the store in its plain form, under its plain diff_id.
            let t = crate::layer::plain::plain_tar(store, h)?;
            layer_sizes.push(t.size);
            *h = t.hex.clone();
            plain.push(t);
            continue;
        }
        if crate::layer::lazy::is_lazy(store, h) {
            return Err(err!(
                "image {what} was pulled lazily and layer sha256:{h} is not complete yet: `strata pull` the image first"
            ));
        }
        let f = write::open_layer_tar(store, h)?;
        layer_sizes.push(f.metadata().ctx(|| "cannot stat a layer tar")?.len());
    }
    if !plain.is_empty() {
        (config, config_hex) = plain_config(&config, &layers)?;
    }
    // Given by tag: record that tag; given by id: every tag of the image.
    let repos = image::read_repositories_or_warn(store);
    let tags = match image::resolve_tag(&repos, what) {
        Some(t) => vec![t],
        None => image::tags_of(&repos, &id),
    };
    Ok(SaveImage {
        config,
        config_hex,
        layers,
        layer_sizes,
        tags,
        plain: std::sync::Arc::new(plain),
    })
}

/// The config of an image with native layers as it leaves the store: the same, with each
/// layer's plain diff_id (so its digest, the image id elsewhere, differs from the local id).
fn plain_config(config: &[u8], hexes: &[String]) -> Result<(Vec<u8>, String)> {
    let mut v: serde_json::Value =
        serde_json::from_slice(config).map_err(|e| err!("cannot parse the image config: {e}"))?;
    v["rootfs"]["diff_ids"] = hexes.iter().map(|h| format!("sha256:{h}")).collect();
    let bytes = serde_json::to_vec(&v).map_err(|e| err!("cannot encode the image config: {e}"))?;
    let hex = crate::util::sha256_hex(&bytes);
    Ok((bytes, hex))
}

/// Write `images` to `output` (`-` for stdout with the archive formats).
pub fn save(
    store: &Store,
    images: &[String],
    format: Format,
    output: &Path,
    quiet: bool,
) -> Result<()> {
    let progress = Progress::new(quiet);
    let list = {
        let _lock = store.lock_shared()?;
        images
            .iter()
            .map(|i| save_image(store, i))
            .collect::<Result<Vec<_>>>()?
    };
    // The kept tars are immutable once published; a concurrent rmi could remove one, which
    // the copy reports as a clean error.
    let to_stdout = output.as_os_str() == "-";
    if format == Format::OciDir {
        if to_stdout {
            return Err(err!("oci-dir needs a directory: pass -o DIR"));
        }
        return save_dir(store, &list, output, &progress);
    }
    if to_stdout {
        let out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
        let mut w = ArchiveWriter::tar(out, store, &progress);
        write_format(&list, format, &mut w)?;
        if let Some(mut out) = w.finish()? {
            out.flush().ctx(|| "cannot write to stdout")?;
        }
        return Ok(());
    }
    // A device or a pipe (/dev/null, /dev/stdout, a fifo) is written in place: a rename
    // would replace it with a regular file.
    if std::fs::metadata(output).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        let f = OpenOptions::new()
            .write(true)
            .open(output)
            .ctx(|| format!("cannot open {}", output.display()))?;
        let mut w = ArchiveWriter::tar(BufWriter::with_capacity(1 << 16, f), store, &progress);
        write_format(&list, format, &mut w)?;
        if let Some(mut out) = w.finish()? {
            out.flush()
                .ctx(|| format!("cannot write {}", output.display()))?;
        }
        return Ok(());
    }
    let tmp = sibling_tmp(output)?;
    let _pending = crate::interrupt::remove_on_interrupt(&tmp);
    let result = (|| -> Result<()> {
        let f = File::create(&tmp).ctx(|| format!("cannot create {}", tmp.display()))?;
        let mut w = ArchiveWriter::tar(BufWriter::with_capacity(1 << 16, f), store, &progress);
        write_format(&list, format, &mut w)?;
        if let Some(out) = w.finish()? {
            let f = out
                .into_inner()
                .map_err(|e| err!("cannot write {}: {}", tmp.display(), e.error()))?;
            f.sync_all()
                .ctx(|| format!("cannot write {}", tmp.display()))?;
        }
        std::fs::rename(&tmp, output).ctx(|| format!("cannot create {}", output.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_format<W: Write>(
    list: &[SaveImage],
    format: Format,
    w: &mut ArchiveWriter<'_, W>,
) -> Result<()> {
    match format {
        Format::DockerArchive => docker_archive::save(list, w),
        Format::OciArchive | Format::OciDir => oci_layout::save(list, w),
    }
}

fn sibling_tmp(output: &Path) -> Result<PathBuf> {
    let name = output
        .file_name()
        .ok_or_else(|| err!("{} is not a file name", output.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    Ok(output.with_file_name(tmp_name))
}

fn save_dir(store: &Store, list: &[SaveImage], output: &Path, progress: &Progress) -> Result<()> {
    if output.exists() {
        let empty = std::fs::read_dir(output)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(err!(
                "{} exists and is not an empty directory: choose a new path",
                output.display()
            ));
        }
    }
    let tmp = sibling_tmp(output)?;
    let _pending = crate::interrupt::remove_on_interrupt(&tmp);
    let _ = remove_tree(&tmp);
    std::fs::create_dir(&tmp).ctx(|| format!("cannot create {}", tmp.display()))?;
    let result = (|| -> Result<()> {
        let mut w = ArchiveWriter::dir(&tmp, store, progress);
        oci_layout::save(list, &mut w)?;
        if output.exists() {
            std::fs::remove_dir(output).ctx(|| format!("cannot replace {}", output.display()))?;
        }
        std::fs::rename(&tmp, output).ctx(|| format!("cannot create {}", output.display()))
    })();
    if result.is_err() {
        let _ = remove_tree(&tmp);
    }
    result
}
