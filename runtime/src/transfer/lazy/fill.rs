//! The union daemon's side of a lazy layer: on the first open of a placeholder, its chunks
//! are fetched by range requests, each checked against the TOC's chunk digest before a byte
//! is written, and the file is made real. A registry that does not answer makes the open
//! fail with EIO after bounded retries and a deadline, with a log line naming the layer and
//! the file. The rest of the layer is downloaded in the background ([`super::complete`]).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use sha2::Digest;
use strata_fs::union::branch::Branch;
use strata_fs::union::lazy_fill::LowerFill;

use crate::err;
use crate::layer::lazy::{self, Chunk, FileChunks, LazyState};
use crate::store::Store;
use crate::util::Result;

use super::super::reference::RemoteRef;
use super::super::registry::{Client, Options};

/// Largest span of a blob one range request asks for.
const MAX_SPAN: u64 = 16 << 20;
/// Largest compressed span strata holds for one chunk (a hostile TOC could name gigabytes).
const MAX_CHUNK_SPAN: u64 = 64 << 20;

/// Seconds from an environment variable, else `default`.
fn env_secs(name: &str, default: f64) -> Duration {
    let v = std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(default);
    Duration::from_secs_f64(v.min(3600.0))
}

/// Fills one lazy layer's files.
pub struct Filler {
    store: Store,
    hex: String,
    state: LazyState,
    files: Vec<FileChunks>,
    by_name: HashMap<PathBuf, usize>,
    done: Mutex<HashSet<usize>>,
    /// One fill at a time (and the client it uses).
    client: Mutex<Client>,
    branch: Branch,
    deadline: Duration,
    prefetch: Once,
}

/// A lazy layer whose records cannot be read: every data open fails (never a placeholder's
/// zeros).
struct Broken(String);

impl LowerFill for Broken {
    fn ensure(&self, rel: &Path) -> io::Result<()> {
        tracing::error!("{}: cannot read {}", self.0, rel.display());
        Err(io::Error::from_raw_os_error(libc::EIO))
    }
}

/// The filler for lowerdir `path` when it is a lazy layer of a store (`ROOT/layers/HEX`).
pub fn filler_for(path: &Path) -> Option<Arc<dyn LowerFill>> {
    let hex = path.file_name()?.to_str()?.to_string();
    let layers = path.parent()?;
    if layers.file_name()? != "layers" || hex.len() != 64 {
        return None;
    }
    let store = Store {
        root: layers.parent()?.to_path_buf(),
    };
    if !lazy::is_lazy(&store, &hex) {
        return None;
    }
    Some(match Filler::new(store, &hex) {
        Ok(f) => Arc::new(f),
        Err(e) => Arc::new(Broken(format!("lazy layer sha256:{hex}: {e}"))),
    })
}

impl Filler {
    /// Read the layer's records (the TOC verified again) and get ready.
    pub fn new(store: Store, hex: &str) -> Result<Filler> {
        let (state, toc) = lazy::read(&store, hex)?;
        let (files, by_name) = lazy::files(&toc, state.toc_offset);
        let r = RemoteRef::parse(&state.reference)?;
        let deadline = env_secs("STRATA_LAZY_DEADLINE", 30.0);
        let o = Options {
            creds: None,
            insecure: state.insecure,
            quiet: true,
            timeout: Some(deadline.clamp(Duration::from_secs(1), Duration::from_secs(10))),
        };
        let client = Client::new(&r, &o, false);
        let branch = Branch::open(&store.layer_dir(hex), "lazy layer").map_err(|e| err!("{e}"))?;
        Ok(Filler {
            store,
            hex: hex.to_string(),
            state,
            files,
            by_name,
            done: Mutex::new(HashSet::new()),
            client: Mutex::new(client),
            branch,
            deadline,
            prefetch: Once::new(),
        })
    }

    /// Start the background download of the whole layer (once, after a delay that leaves
    /// the link to the container's first reads).
    fn start_prefetch(&self) {
        self.prefetch.call_once(|| {
            if std::env::var("STRATA_LAZY_PREFETCH").is_ok_and(|v| v == "0") {
                return;
            }
            let delay = env_secs("STRATA_LAZY_PREFETCH_DELAY", 2.0);
            let (store, hex, reference, insecure) = (
                self.store.clone(),
                self.hex.clone(),
                self.state.reference.clone(),
                self.state.insecure,
            );
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let run = || -> Result<usize> {
                    let r = RemoteRef::parse(&reference)?;
                    let o = Options {
                        insecure,
                        quiet: true,
                        ..Default::default()
                    };
                    super::complete(&store, &mut Client::new(&r, &o, false), &hex)
                };
                match run() {
                    Ok(n) => tracing::info!("lazy layer sha256:{hex}: complete ({n} files prefetched)"),
                    Err(e) => tracing::warn!(
                        "lazy layer sha256:{hex}: background download failed ({e}); `strata pull` of the image completes it"
                    ),
                }
            });
        });
    }

    fn fill(&self, i: usize, f: &FileChunks) -> Result<()> {
        let mut client = self
            .client
            .lock()
            .map_err(|_| err!("the fill lock is poisoned"))?;
        let file = File::from(
            self.branch
                .open_at(&f.rel, OFlag::O_RDWR, 0)
                .map_err(|e| err!("cannot open the placeholder: {e}"))?,
        );
        let _flock = lazy::lock(&self.store, &self.hex)?;
        if lazy::is_pending(&file) {
            // Group by group (at most MAX_SPAN in memory), each chunk verified before it is
            // written; the mark goes only once every chunk is in.
            lazy::fill_with(&file, |file| {
                for group in groups(&f.chunks) {
                    let data = self
                        .fetch_group(&mut client, group)
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    for (c, bytes) in &data {
                        if c.file_offset.saturating_add(c.len) > f.size {
                            return Err(io::Error::other(format!(
                                "the TOC puts a chunk at {} past the file's {} bytes",
                                c.file_offset, f.size
                            )));
                        }
                        file.write_all_at(bytes, c.file_offset)?;
                    }
                }
                Ok(())
            })
            .map_err(|e| err!("{e}"))?;
        }
        if let Ok(mut d) = self.done.lock() {
            d.insert(i);
        }
        Ok(())
    }

    /// Fetch and verify consecutive chunks, retrying transport failures until the deadline.
    fn fetch_group<'c>(
        &self,
        client: &mut Client,
        group: &'c [Chunk],
    ) -> Result<Vec<(&'c Chunk, Vec<u8>)>> {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            return Ok(Vec::new());
        };
        if last.end.saturating_sub(first.offset) > MAX_CHUNK_SPAN {
            return Err(err!(
                "the TOC gives a chunk of more than {MAX_CHUNK_SPAN} compressed bytes at blob offset {}: refusing it",
                first.offset
            ));
        }
        let start = Instant::now();
        let mut wait = Duration::from_millis(200);
        let span = loop {
            match client.blob_range(&self.state.digest, first.offset, last.end) {
                Ok(b) => break b,
                Err(e) => {
                    if start.elapsed() + wait >= self.deadline {
                        return Err(err!(
                            "gave up after {:.1} s: {e}",
                            start.elapsed().as_secs_f64()
                        ));
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        };
        group
            .iter()
            .map(|c| {
                // A TOC is verified but may still be hostile: nothing here may underflow.
                let from = c.offset.saturating_sub(first.offset) as usize;
                let to = c.end.saturating_sub(first.offset) as usize;
                let member = span.get(from..to).unwrap_or_default();
                Ok((c, verified(member, c)?))
            })
            .collect()
    }
}

/// Consecutive chunks in spans of at most [`MAX_SPAN`].
fn groups(chunks: &[Chunk]) -> Vec<&[Chunk]> {
    let mut out = Vec::new();
    let mut begin = 0;
    for i in 1..=chunks.len() {
        let split = i == chunks.len()
            || chunks[i].offset != chunks[i - 1].end
            || chunks[i].end.saturating_sub(chunks[begin].offset) > MAX_SPAN;
        if split {
            out.push(&chunks[begin..i]);
            begin = i;
        }
    }
    out
}

/// A chunk's bytes from its gzip member, only if they have the TOC's digest.
fn verified(member: &[u8], c: &Chunk) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(c.len as usize);
    flate2::read::GzDecoder::new(member)
        .take(c.len)
        .read_to_end(&mut out)
        .map_err(|e| {
            err!(
                "the chunk at blob offset {} does not decompress: {e}",
                c.offset
            )
        })?;
    let got = format!("sha256:{}", crate::util::hex(&sha2::Sha256::digest(&out)));
    if out.len() as u64 != c.len || got != c.digest {
        return Err(err!(
            "the chunk at blob offset {} has digest {got}, not the TOC's {}: refusing it",
            c.offset,
            c.digest
        ));
    }
    Ok(out)
}

impl LowerFill for Filler {
    fn ensure(&self, rel: &Path) -> io::Result<()> {
        let Some(&i) = self.by_name.get(rel) else {
            return Ok(());
        };
        if self.done.lock().is_ok_and(|d| d.contains(&i)) {
            return Ok(());
        }
        self.start_prefetch();
        let f = self
            .files
            .get(i)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))?;
        self.fill(i, f).map_err(|e| {
            tracing::error!(
                "lazy layer sha256:{} ({}): cannot fetch {}: {e}",
                self.hex,
                self.state.digest,
                rel.display()
            );
            io::Error::from_raw_os_error(libc::EIO)
        })
    }
}
