//! Shared helpers for the end-to-end tests: a harness that mounts the real strata
//! binary and the kernel's overlayfs on identical branch trees and compares what
//! operations do on both. No mocks: real FUSE mounts, real overlayfs.
//!
//! * [`Layer`] describes a branch tree (files, dirs, symlinks, hard links, fifos,
//!   whiteouts and opaque dirs in every lower format) and builds it for strata or,
//!   translated, for the kernel.
//! * [`Fixture`] holds the layers and mounts them: [`Fixture::pair`] gives a [`Pair`]
//!   (strata + overlayfs, each with its own branches, upper and work dirs).
//! * [`Mounted`] is one mount with operation helpers returning `Result<_, Errno>`.
//! * Everything lives under `/tmp/strata-tests/<test>-...`, unmounted and removed on
//!   drop (set `STRATA_KEEP=1` to keep the directories for a post-mortem).
//!
//! The strata binary is `$STRATA_BIN` or `<workspace>/target/debug/strata`; with
//! `STRATA_BIN=/usr/bin/fuse-overlayfs` the harness itself can be validated.

pub mod delta;
pub mod ext4;
pub mod layer;
pub mod mount;
pub mod ops;
pub mod peer;
pub mod random_ops;
pub mod stack;
pub mod stack_pair;
pub mod sys;
pub mod tree;
pub mod users;

pub use layer::{Flavor, Layer, Opq, Wh};
pub use mount::{
    is_fuse_overlayfs, is_mounted, run_strata, strata_bin, wait_until, Fixture, Kind, Mounted,
    Pair, TempDir,
};
pub use nix::errno::Errno;
pub use ops::{fnv1a, long_name, max_name, FileKind, FsInfo, Meta};
pub use sys::R;
pub use tree::{Entry, Tree};

/// A small deterministic PRNG (SplitMix64) for replayable random tests.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Seeds for random tests: `STRATA_SEED` (one seed, replay), a fixed set under CI, or `n`
/// seeds from the clock.
pub fn seeds(n: usize) -> Vec<u64> {
    if let Ok(s) = std::env::var("STRATA_SEED") {
        let s = s.trim();
        let v = s
            .strip_prefix("0x")
            .map(|h| u64::from_str_radix(h, 16))
            .unwrap_or_else(|| s.parse());
        return vec![v.unwrap_or_else(|e| panic!("STRATA_SEED={s}: {e}"))];
    }
    // CI runs a fixed set so a red run always means a change broke something; local runs
    // explore new seeds every time (STRATA_FRESH_SEEDS=1 does that in CI too).
    let fixed =
        std::env::var_os("CI").is_some() && std::env::var_os("STRATA_FRESH_SEEDS").is_none();
    let t = if fixed {
        0x5eed_c1c1_0000_0001
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ ((std::process::id() as u64) << 32)
    };
    let mut r = Rng::new(t);
    (0..n).map(|_| r.next_u64()).collect()
}
