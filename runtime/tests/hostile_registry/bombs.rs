//! A gzip bomb layer does not fill the disk.

use super::*;

/// A gzip stream of a tar holding one file of `size` zero bytes (multi-member: one member
/// of 1 MiB of zeros repeated), built without holding the uncompressed tar.
pub(crate) struct ZeroBomb {
    pub(crate) size: u64,
}

impl ZeroBomb {
    pub(crate) fn header(&self) -> Vec<u8> {
        let mut hd = tar::Header::new_gnu();
        hd.set_path("zero").unwrap();
        hd.set_size(self.size);
        hd.set_mode(0o644);
        hd.set_mtime(1_700_000_000);
        hd.set_uid(0);
        hd.set_gid(0);
        hd.set_cksum();
        hd.as_bytes().to_vec()
    }

    /// The compressed blob, as (prefix, repeated member, count, suffix).
    pub(crate) fn parts(&self) -> (Vec<u8>, Vec<u8>, u64, Vec<u8>) {
        let mib = 1u64 << 20;
        assert_eq!(self.size % mib, 0);
        (
            gzip(&self.header()),
            gzip(&vec![0u8; mib as usize]),
            self.size / mib,
            gzip(&[0u8; 1024]),
        )
    }

    pub(crate) fn compressed_len(&self) -> u64 {
        let (p, m, n, s) = self.parts();
        p.len() as u64 + m.len() as u64 * n + s.len() as u64
    }

    pub(crate) fn reader(&self) -> impl Read + Send {
        let (p, m, n, s) = self.parts();
        std::io::Cursor::new(p)
            .chain(Repeat {
                data: m,
                left: n,
                pos: 0,
            })
            .chain(std::io::Cursor::new(s))
    }

    /// sha256 of the compressed blob and of the uncompressed tar.
    pub(crate) fn digests(&self) -> (String, String) {
        let mut c = sha2::Sha256::new();
        std::io::copy(&mut self.reader(), &mut HashW(&mut c)).unwrap();
        let mut u = sha2::Sha256::new();
        u.update(self.header());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..self.size >> 20 {
            u.update(&zeros);
        }
        u.update([0u8; 1024]);
        let hex = |d: sha2::Sha256| {
            d.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        (format!("sha256:{}", hex(c)), format!("sha256:{}", hex(u)))
    }
}

pub(crate) struct Repeat {
    pub(crate) data: Vec<u8>,
    pub(crate) left: u64,
    pub(crate) pos: usize,
}

impl Read for Repeat {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.data.len() {
            self.pos = 0;
            self.left -= 1;
        }
        Ok(n)
    }
}

pub(crate) struct HashW<'a>(&'a mut sha2::Sha256);

impl Write for HashW<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) fn disk_used(p: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-s", "-B1"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0)
}

#[test]
fn gzip_bomb_layer_does_not_fill_the_disk() {
    let e = Env::new();
    let bomb = Arc::new(ZeroBomb { size: 10 << 30 });
    let (blob_digest, diff_id) = bomb.digests();
    let blob_len = bomb.compressed_len();
    let mut repo = Repo::default();
    let cfg = config_json(std::slice::from_ref(&diff_id));
    let cl = cfg.len() as u64;
    let c = desc(OCI_CONFIG, &repo.blob(cfg), cl);
    let l = desc(LAYER_GZIP, &blob_digest, blob_len);
    repo.manifest("bomb", OCI_MANIFEST, manifest_json(&c, &[l]));
    let b2 = bomb.clone();
    let server = Server::start(move |r| {
        if r.path.ends_with(&blob_digest) {
            return Reply::Stream(h(&[]), blob_len, Box::new(b2.reader()));
        }
        repo.answer(r)
    });
    // The peak matters too: a pull that fills the disk and then cleans up is no better.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (stop, peak, store) = (stop.clone(), peak.clone(), e.store());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(disk_used(&store) as usize, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let start = Instant::now();
    let (out, _) = e.strata(
        &["pull", &format!("{}/x:bomb", server.host())],
        Duration::from_secs(300),
    );
    let took = start.elapsed();
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let used = disk_used(&e.store());
    let peak = peak.load(Ordering::SeqCst) as u64;
    eprintln!(
        "10 GiB of zeros in a {blob_len}-byte layer: exit {:?} in {took:?}, store {used} bytes, peak {peak} bytes; {}",
        out.status.code(),
        err.trim()
    );
    // Accepted, as docker accepts it: the file is all there, as holes.
    assert!(out.status.success(), "{err}");
    assert!(used < 64 << 20, "the store uses {used} bytes");
    assert!(peak < 64 << 20, "the store used up to {peak} bytes");
    let layer = std::fs::read_dir(e.store().join("layers"))
        .unwrap()
        .flatten()
        .map(|x| x.path())
        .find(|p| p.is_dir())
        .unwrap();
    assert_eq!(layer.join("zero").metadata().unwrap().len(), 10 << 30);
}
