//! The bodies of strata's fuzz targets, shared by the libFuzzer binaries in `fuzz_targets/`
//! and by the seeded stand-alone driver (`examples/drive.rs`) that runs without libFuzzer.
//!
//! Every target panics (a "crash" for the fuzzer) only when strata misbehaves: a panic
//! inside strata, an error message over several lines, a broken round trip, a file written
//! outside the store, a staging directory left behind, or a store changed by a refused input.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use strata_fs::delta::format::{DeltaMap, Source};
use strata_fs::union::meta::Meta;
use strata_fs::config::options::MountOptions;
use strata_fs::config::size::parse_size;
use strata_runtime::image::Reference;
use strata_runtime::store::Store;
use strata_runtime::transfer::reference::RemoteRef;

/// Largest file the importers may write while fuzzing (RLIMIT_FSIZE): a compressed or
/// sparse entry that expands past it fails with EFBIG instead of filling the disk.
pub const FSIZE_LIMIT: u64 = 256 << 20;

/// A private directory holding the store and a canary directory beside it.
pub struct Sandbox {
    pub root: PathBuf,
    pub store: Store,
    canary: PathBuf,
}

const CANARY_SECRET: &[u8] = b"the canary must never change\n";

fn sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| {
        let base = std::env::var_os("STRATA_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let root = base.join(format!("strata-fuzz-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("sandbox");
        let canary = root.join("canary");
        fs::create_dir(&canary).expect("canary");
        fs::write(canary.join("secret"), CANARY_SECRET).expect("canary secret");
        let store = Store::open(Some(&root.join("store"))).expect("store");
        // SAFETY: plain libc calls with valid arguments.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: FSIZE_LIMIT,
                rlim_max: FSIZE_LIMIT,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
        }
        Sandbox {
            root,
            store,
            canary,
        }
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl Sandbox {
    /// Nothing appeared beside the store, the canary is intact, nothing is left in tmp/.
    fn check_outside(&self, what: &str) {
        let mut beside = names(&self.root);
        beside.retain(|n| n != "input");
        assert_eq!(
            beside,
            vec!["canary".to_string(), "store".to_string()],
            "{what}: something was written beside the store"
        );
        assert_eq!(
            names(&self.canary),
            vec!["secret".to_string()],
            "{what}: the canary dir changed"
        );
        assert_eq!(
            fs::read(self.canary.join("secret")).ok().as_deref(),
            Some(CANARY_SECRET),
            "{what}: the canary was written"
        );
        let tmp = names(&self.store.tmp_dir());
        assert!(tmp.is_empty(), "{what}: staging left behind: {tmp:?}");
    }

    fn store_is_empty(&self) -> bool {
        names(&self.store.layers_dir()).is_empty()
            && names(&self.store.images_dir()).is_empty()
            && names(&self.store.containers_dir()).is_empty()
    }

    /// Back to an empty store after an accepted input.
    fn reset(&self) {
        for d in [self.store.layers_dir(), self.store.images_dir()] {
            let _ = strata_runtime::store::remove_tree(&d);
            let _ = fs::create_dir_all(&d);
        }
    }

    /// Every extracted layer: only regular files, dirs, symlinks, fifos and 0/0 whiteouts;
    /// no file larger than the limit.
    fn check_layers(&self, what: &str) {
        let mut stack = vec![self.store.layers_dir()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let Ok(m) = e.path().symlink_metadata() else {
                    continue;
                };
                let ft = m.file_type();
                if ft.is_dir() {
                    stack.push(e.path());
                } else if ft.is_block_device() || (ft.is_char_device() && m.rdev() != 0) {
                    panic!("{what}: a device node was extracted: {}", e.path().display());
                } else if ft.is_socket() {
                    panic!("{what}: a socket was extracted: {}", e.path().display());
                }
            }
        }
    }
}

fn one_line(what: &str, msg: &str) {
    assert!(
        !msg.trim_end().contains('\n'),
        "{what}: the error is not one line: {msg:?}"
    );
    assert!(!msg.trim().is_empty(), "{what}: empty error message");
}

/// `strata import`: the bytes as a tarball (plain, gzip or zstd) into a store.
pub fn tar_import(data: &[u8]) {
    let sb = sandbox();
    let r = strata_runtime::image::commands::import(&sb.store, data, "fuzz:1", &[], "fuzz");
    sb.check_outside("import");
    match r {
        Ok(_) => {
            sb.check_layers("import");
            sb.reset();
        }
        Err(e) => {
            one_line("import", &e.0);
            assert!(
                sb.store_is_empty(),
                "import: a refused tar changed the store ({e})"
            );
        }
    }
}

/// `strata load -i FILE`: the bytes as a docker-archive or OCI archive (plain or compressed).
pub fn image_load(data: &[u8]) {
    let sb = sandbox();
    let input = sb.root.join("input");
    fs::File::create(&input)
        .and_then(|mut f| f.write_all(data))
        .expect("write the input");
    let r = strata_runtime::transfer::load(&sb.store, Some(&input), true);
    let _ = fs::remove_file(&input);
    sb.check_outside("load");
    match r {
        Ok(_) => {
            sb.check_layers("load");
            sb.reset();
        }
        Err(e) => {
            one_line("load", &e.0);
            assert!(
                sb.store_is_empty(),
                "load: a refused archive changed the store ({e})"
            );
        }
    }
}

/// Read a little-endian u64 from the tail of `data` (0 when short): cheap extra parameters.
fn tail_u64(data: &[u8], k: usize) -> u64 {
    let mut b = [0u8; 8];
    let start = data.len().saturating_sub(8 * (k + 1));
    let end = data.len().saturating_sub(8 * k);
    let s = &data[start..end];
    b[..s.len()].copy_from_slice(s);
    u64::from_le_bytes(b)
}

/// Check a delta map's invariants and answer some queries on it.
fn exercise_delta(d: &DeltaMap, p: u64, q: u64) {
    assert!(d.block >= 1);
    for w in d.ranges.windows(2) {
        assert!(w[0].1 < w[1].0, "ranges overlap or touch: {:?}", d.ranges);
    }
    for r in &d.ranges {
        assert!(r.0 < r.1, "empty range {r:?}");
    }
    // File offsets stay below i64::MAX; bound the length so block size 1 stays cheap.
    let off = p % (i64::MAX as u64);
    let len = q % (64 * d.block.min(1 << 20)).max(1);
    let runs = d.runs(off, len);
    let mut pos = off;
    for (src, at, n) in &runs {
        assert_eq!(*at, pos, "runs are not contiguous: {runs:?}");
        assert!(*n > 0, "empty run: {runs:?}");
        if *src == Source::Lower {
            assert!(at + n <= d.limit, "lower run past the limit: {runs:?}");
        }
        pos += n;
    }
    assert_eq!(pos, off + len, "runs: {runs:?}");
    let mut m = d.clone();
    m.insert(p % (1 << 40), (p % (1 << 40)) + (q % 4096));
    for w in m.ranges.windows(2) {
        assert!(w[0].1 < w[1].0, "insert broke the ranges: {:?}", m.ranges);
    }
    m.truncate(q % (i64::MAX as u64));
    assert!(m.limit <= d.limit);
    let _ = m.has(p);
    let _ = m.blocks();
}

/// The meta xattr record of an upper entry (`Meta::decode`, with the delta block map).
pub fn meta_record(data: &[u8]) {
    if let Ok(m) = Meta::decode(data) {
        let enc = m.encode();
        let back = Meta::decode(&enc).unwrap_or_else(|e| {
            panic!(
                "re-decoding the encoding failed: {e}: {:?}",
                String::from_utf8_lossy(&enc)
            )
        });
        assert_eq!(back, m, "round trip changed the record");
        if let Some(d) = &m.delta {
            exercise_delta(d, tail_u64(data, 0), tail_u64(data, 1));
        }
    }
    // The delta lines alone, as fsck reads them.
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\n').unwrap_or((&text, ""));
    if let Ok(d) = DeltaMap::decode(a, Some(b)) {
        let again = DeltaMap::decode(
            d.encode()
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("delta "))
                .unwrap_or(""),
            d.encode()
                .lines()
                .nth(1)
                .and_then(|l| l.strip_prefix("blocks ")),
        );
        assert_eq!(again.as_ref(), Ok(&d), "delta map round trip");
        exercise_delta(&d, tail_u64(data, 0), tail_u64(data, 1));
    }
}

/// `-o` option strings (NUL separates several `-o`), then what the daemon does with the
/// result: id mapping both ways, the trace path glob, sizes.
pub fn mount_options(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let groups: Vec<&str> = text.split('\0').collect();
    let r = MountOptions::parse(&groups);
    match r {
        Err(e) => one_line("mount options", &e),
        Ok(o) => {
            let ids = [
                0u32,
                1,
                65534,
                u32::MAX,
                tail_u64(data, 0) as u32,
                (tail_u64(data, 0) >> 32) as u32,
            ];
            for id in ids {
                let _ = o.uidmap.to_inside(id);
                let _ = o.uidmap.to_outside(id);
                let _ = o.gidmap.to_inside(id);
                let _ = o.gidmap.to_outside(id);
            }
            if let Some(g) = o.trace.path.as_ref() {
                for p in [
                    &b"/"[..],
                    b"/etc/passwd",
                    b"/var/lib/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z.db",
                    b"/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
                ] {
                    let _ = g.matches(p);
                }
            }
            assert!(o.compact_ratio.is_finite());
        }
    }
    let _ = parse_size(&text);
}

/// Image names: local `NAME[:TAG]` and remote `[host/]path[:tag][@digest]`; accepted ones
/// must print back to themselves.
pub fn image_reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match Reference::parse(s) {
        Ok(r) => {
            let back = Reference::parse(&r.to_string())
                .unwrap_or_else(|e| panic!("{r} does not parse again: {e}"));
            assert_eq!(back, r, "local reference round trip");
        }
        Err(e) => one_line("reference", &e.0),
    }
    match RemoteRef::parse(s) {
        Ok(r) => {
            let mut printed = r.location();
            if let Some(t) = &r.tag {
                printed.push(':');
                printed.push_str(t);
            }
            if let Some(d) = &r.digest {
                printed.push('@');
                printed.push_str(d);
            }
            let back = RemoteRef::parse(&printed)
                .unwrap_or_else(|e| panic!("{printed} does not parse again: {e}"));
            assert_eq!(back, r, "remote reference round trip via {printed}");
            // What pull tags the image with must be a valid local name.
            let local = format!("{}:{}", r.local_name(), r.tag.as_deref().unwrap_or("latest"));
            if let Err(e) = Reference::parse(&local) {
                panic!("pulled {s:?} would be tagged {local:?}, which is refused: {e}");
            }
            let _ = r.is_local();
            let _ = r.manifest_ref();
        }
        Err(e) => one_line("remote reference", &e.0),
    }
}

/// The targets by name, for the stand-alone driver.
pub fn targets() -> BTreeMap<&'static str, fn(&[u8])> {
    let mut m: BTreeMap<&'static str, fn(&[u8])> = BTreeMap::new();
    m.insert("tar_import", tar_import);
    m.insert("image_load", image_load);
    m.insert("meta_record", meta_record);
    m.insert("mount_options", mount_options);
    m.insert("image_reference", image_reference);
    m
}

/// Read a whole file (driver helper).
pub fn read_file(p: &Path) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    fs::File::open(p).ok()?.read_to_end(&mut v).ok()?;
    Some(v)
}
