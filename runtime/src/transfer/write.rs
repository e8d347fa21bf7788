//! Writing archives: members go either into a tar stream (docker-archive, oci-archive) or into
//! a directory (oci-dir). Blobs are written once, whatever number of images share them, and
//! layer tars are copied byte for byte from the store (their sha256 is checked on the way).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::err;
use crate::layer;
use crate::store::Store;
use crate::util::{Ctx, HashingReader, Result};

use super::progress::Progress;

/// An image ready to be written: its config bytes (hashing to its id) and layer hexes.
#[derive(Debug, Clone)]
pub struct SaveImage {
    /// Config bytes exactly as stored.
    pub config: Vec<u8>,
    /// Their sha256 hex (the image id).
    pub config_hex: String,
    /// diff_id hexes, bottom first.
    pub layers: Vec<String>,
    /// Uncompressed tar size per layer.
    pub layer_sizes: Vec<u64>,
    /// name:tag references to record.
    pub tags: Vec<String>,
    /// Plain tars of the image's native layers, written for this save or push (removed
    /// when the last clone goes).
    pub plain: std::sync::Arc<Vec<crate::layer::plain::PlainTar>>,
}

impl SaveImage {
    /// The uncompressed tar of layer `hex` (a plain diff_id hex): a native layer's plain
    /// tar written for this save, else the store's kept tar.
    pub fn layer_file(&self, store: &Store, hex: &str) -> PathBuf {
        self.plain
            .iter()
            .find(|t| t.hex == hex)
            .map(|t| t.path.clone())
            .unwrap_or_else(|| layer::tar_path(store, hex))
    }
}

enum Target<W: Write> {
    Tar(tar::Builder<W>),
    Dir(PathBuf),
}

/// Members of an archive being written.
pub struct ArchiveWriter<'a, W: Write> {
    target: Target<W>,
    written: HashSet<String>,
    store: &'a Store,
    progress: &'a Progress,
}

fn header(size: u64, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h
}

impl<'a, W: Write> ArchiveWriter<'a, W> {
    /// Members go into a tar written to `w`.
    pub fn tar(w: W, store: &'a Store, progress: &'a Progress) -> Self {
        let mut b = tar::Builder::new(w);
        b.mode(tar::HeaderMode::Deterministic);
        ArchiveWriter {
            target: Target::Tar(b),
            written: HashSet::new(),
            store,
            progress,
        }
    }

    fn dirs(&mut self) -> Result<()> {
        if !self.written.insert("blobs/".into()) {
            return Ok(());
        }
        match &mut self.target {
            Target::Tar(b) => {
                for d in ["blobs/", "blobs/sha256/"] {
                    let mut h = header(0, true);
                    b.append_data(&mut h, d, io::empty())
                        .ctx(|| "cannot write the archive")?;
                }
                Ok(())
            }
            Target::Dir(root) => {
                let p = root.join("blobs/sha256");
                std::fs::create_dir_all(&p).ctx(|| format!("cannot create {}", p.display()))
            }
        }
    }

    fn put(&mut self, path: &str, size: u64, reader: impl Read) -> Result<()> {
        match &mut self.target {
            Target::Tar(b) => {
                let mut h = header(size, false);
                b.append_data(&mut h, path, reader)
                    .ctx(|| format!("cannot write {path} into the archive"))
            }
            Target::Dir(root) => {
                let p = root.join(path);
                let mut f = File::create(&p).ctx(|| format!("cannot create {}", p.display()))?;
                let n = io::copy(&mut reader.take(size), &mut f)
                    .ctx(|| format!("cannot write {}", p.display()))?;
                if n != size {
                    return Err(err!("{}: short write", p.display()));
                }
                Ok(())
            }
        }
    }

    /// A top-level file (manifest.json, index.json, oci-layout).
    pub fn file(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        self.put(path, bytes.len() as u64, bytes)
    }

    /// A small blob (config, manifest) under blobs/sha256/, once.
    pub fn blob(&mut self, hex: &str, bytes: &[u8]) -> Result<()> {
        self.dirs()?;
        let path = format!("blobs/sha256/{hex}");
        if self.written.insert(path.clone()) {
            self.put(&path, bytes.len() as u64, bytes)?;
        }
        Ok(())
    }

    /// A layer's tar (`img`'s, see [`SaveImage::layer_file`]) under blobs/sha256/<diff hex>, once.
    pub fn layer_tar(&mut self, img: &SaveImage, hex: &str) -> Result<()> {
        self.dirs()?;
        let path = format!("blobs/sha256/{hex}");
        if !self.written.insert(path.clone()) {
            return Ok(());
        }
        let src = img.layer_file(self.store, hex);
        let f = open_tar_at(&src, hex)?;
        let size = f
            .metadata()
            .ctx(|| format!("cannot stat {}", src.display()))?
            .len();
        let bar = self
            .progress
            .bar(&super::docker_archive::short(hex), Some(size));
        bar.message("writing");
        let mut hashed = HashingReader::new(bar.reader(BufReader::with_capacity(1 << 16, f)));
        self.put(&path, size, &mut hashed)?;
        if hashed.finish() != hex {
            return Err(err!(
                "the kept tar of layer sha256:{hex} ({}) no longer matches its digest: the store is corrupt; remove the image and load or pull it again",
                src.display()
            ));
        }
        bar.finish("done");
        Ok(())
    }

    /// Finish a tar target, returning the writer.
    pub fn finish(self) -> Result<Option<W>> {
        match self.target {
            Target::Tar(b) => Ok(Some(b.into_inner().ctx(|| "cannot finish the archive")?)),
            Target::Dir(_) => Ok(None),
        }
    }
}

impl<'a> ArchiveWriter<'a, io::Sink> {
    /// Members go into the directory `root` (which must exist).
    pub fn dir(root: &Path, store: &'a Store, progress: &'a Progress) -> Self {
        ArchiveWriter {
            target: Target::Dir(root.to_path_buf()),
            written: HashSet::new(),
            store,
            progress,
        }
    }
}

/// Open a layer's kept tar, with a clear word when an older strata did not keep it.
pub fn open_layer_tar(store: &Store, hex: &str) -> Result<File> {
    open_tar_at(&layer::tar_path(store, hex), hex)
}

/// Open the layer tar at `p` (layer `hex`'s).
pub fn open_tar_at(p: &Path, hex: &str) -> Result<File> {
    File::open(p).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => err!(
            "layer sha256:{hex} has no kept tar (stored by an older strata): remove the image and import, load or pull it again"
        ),
        _ => err!("cannot open {}: {e}", p.display()),
    })
}
