//! Stand-alone driver for the fuzz targets, without libFuzzer (stable Rust, no sanitizer):
//! replays every file of the corpus and seed dirs, then runs seeded random mutations of them
//! for the given time. Replayable: the seed is printed, and a failing input is written to
//! `fuzz/artifacts/TARGET/drive-crash-*` before the panic is reported.
//!
//!     cargo run --release --example drive -- TARGET SECONDS [SEED]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"..", b"/", b".wh.", b".wh..wh..opq", b"\0", b"\n", b":", b",", b"=", b"@", b"\\",
    b"sha256:", b"18446744073709551615", b"-1", b"0", b"4096", b"end\n", b"delta 1 ",
    b"blocks ", b"lowerdir=", b"**", b"*",
];

fn mutate(rng: &mut Rng, pool: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    let mut v = if pool.is_empty() {
        Vec::new()
    } else {
        pool[rng.below(pool.len())].clone()
    };
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => {
                let s = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(at..at, s.iter().copied());
            }
            3 if !v.is_empty() => {
                let n = rng.below(v.len() - at.min(v.len()) + 1);
                v.drain(at.min(v.len())..(at + n).min(v.len()));
            }
            4 => v.truncate(at),
            5 if !pool.is_empty() => {
                let other = &pool[rng.below(pool.len())];
                let a = rng.below(other.len() + 1);
                let b = a + rng.below(other.len() - a + 1);
                v.splice(at..at, other[a..b].iter().copied());
            }
            _ => {
                let n = rng.below(16);
                for _ in 0..n {
                    v.insert(at.min(v.len()), rng.next() as u8);
                }
            }
        }
    }
    v.truncate(max_len);
    v
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let targets = strata_fuzz::targets();
    let Some(f) = args.get(1).and_then(|t| targets.get(t.as_str())) else {
        eprintln!(
            "usage: drive TARGET SECONDS [SEED]; targets: {:?}",
            targets.keys().collect::<Vec<_>>()
        );
        std::process::exit(2);
    };
    let target = args[1].clone();
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pool = Vec::new();
    for d in ["seeds", "corpus"] {
        for p in files(&here.join(d).join(&target)) {
            if let Some(b) = strata_fuzz::read_file(&p) {
                pool.push(b);
            }
        }
    }
    let max_len = if target.contains("tar") || target.contains("load") { 1 << 16 } else { 4096 };
    let artifacts = here.join("artifacts").join(&target);
    let run = |data: &[u8], n: u64| {
        let r = std::panic::catch_unwind(|| f(data));
        if r.is_err() {
            let _ = std::fs::create_dir_all(&artifacts);
            let p = artifacts.join(format!("drive-crash-{seed}-{n}"));
            let _ = std::fs::write(&p, data);
            eprintln!("CRASH: input saved to {} (seed {seed})", p.display());
            std::process::exit(1);
        }
    };
    for (i, b) in pool.iter().enumerate() {
        run(b, i as u64);
    }
    println!("{target}: replayed {} corpus inputs; seed {seed}", pool.len());
    let mut rng = Rng(seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < deadline {
        let input = mutate(&mut rng, &pool, max_len);
        run(&input, n);
        n += 1;
    }
    println!("{target}: {n} random inputs in {secs} s, no crash (seed {seed})");
}
