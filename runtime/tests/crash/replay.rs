//! The seeded kill schedule: the rng, the seed and the replay line.

use super::*;

/// A tiny deterministic generator (splitmix64): the schedule of kills and delays.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `STRATA_SEED` (replay), a fixed seed under CI (unless `STRATA_FRESH_SEEDS`), else the clock.
pub(crate) fn seed(salt: u64) -> u64 {
    if let Ok(s) = std::env::var("STRATA_SEED") {
        let s = s.trim();
        return s
            .strip_prefix("0x")
            .map(|h| u64::from_str_radix(h, 16))
            .unwrap_or_else(|| s.parse())
            .unwrap_or_else(|e| panic!("STRATA_SEED={s}: {e}"));
    }
    let fixed =
        std::env::var_os("CI").is_some() && std::env::var_os("STRATA_FRESH_SEEDS").is_none();
    if fixed {
        return 0x5eed_c4a5_0000_0000 ^ salt;
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    t ^ ((std::process::id() as u64) << 32) ^ salt
}

/// `STRATA_CRASH_ITERS`, or 8: the fuse test's iterations (the overlay test runs half).
pub(crate) fn iterations() -> usize {
    std::env::var("STRATA_CRASH_ITERS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(8)
}

/// Prints the replay line when the test fails.
pub(crate) struct Replay {
    pub(crate) test: &'static str,
    pub(crate) seed: u64,
    pub(crate) iters: usize,
    pub(crate) at: Cell<usize>,
    pub(crate) what: std::cell::RefCell<String>,
}

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n{} failed at iteration {} of {} ({}) with seed {:#x}; replay with:\n  STRATA_SEED={:#x} STRATA_CRASH_ITERS={} cargo test -p strata-runtime --test crash -- {} --nocapture\n",
                self.test,
                self.at.get(),
                self.iters,
                self.what.borrow(),
                self.seed,
                self.seed,
                iterations(),
                self.test
            );
        }
    }
}

/// What is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    /// The supervisor, while the container writes.
    Supervisor,
    /// The root's FUSE daemon, while the container writes.
    Daemon,
    /// Both.
    Both,
    /// The supervisor while it starts the container (`run -d` has not returned).
    Starting,
}
