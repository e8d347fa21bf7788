//! Model-based random I/O on block-level delta files (BRIEF §3, §7; issue 3).
//!
//! A lower file of a few MiB (around and above `delta_threshold`) is written through a
//! strata mount by a seeded random sequence of pread/pwrite (aligned and not, crossing
//! block boundaries), truncate down and up, fallocate (plain, KEEP_SIZE,
//! PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE), shared writable mmap + msync, fsync,
//! copy_file_range out of and into the delta, rename, link, chmod and utimes, and
//! remounts. Every operation is mirrored on an in-memory model of the bytes; what the
//! mount returns is compared with it after every operation (half the time through an
//! O_DIRECT descriptor, so the daemon's merge is read and not the page cache), and the
//! whole file (through every name) at every remount, where also: `strata fsck` is
//! clean, the block map only claims blocks that were written, its lower limit is the
//! smallest size the file was truncated to, and the upper file allocates no more than
//! the blocks it claims.
//!
//! `STRATA_SEED` replays a run (the seed is printed on failure with the command);
//! `STRATA_DELTA_OPS` sets the number of operations of each test (default below).

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;
use strata_tests::delta::{first_diff, meta_blocks, meta_line, pattern, write_lower, DeltaMount};
use strata_tests::{seeds, sys, Errno, Rng};

mod checks;
mod ops;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// Operations per test in the default run (two tests: 4K blocks and 64K blocks).
const DEFAULT_OPS_4K: usize = 120_000;
const DEFAULT_OPS_64K: usize = 84_000;

fn ops_budget(default: usize) -> usize {
    std::env::var("STRATA_DELTA_OPS")
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Prints the seed and how to replay when the test thread panics.
struct SeedGuard {
    seed: u64,
    test: &'static str,
    ops: usize,
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n{} failed with seed {:#x}; replay with:\n  STRATA_SEED={:#x} STRATA_DELTA_OPS={} cargo test -p strata-tests --test delta_model -- {} --nocapture\n",
                self.test, self.seed, self.seed, self.ops, self.test
            );
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Cfg {
    size: u64,
    /// Block size (the option is passed unless `explicit` is false and it is 4K).
    block: u64,
    explicit_block: bool,
    /// compact_ratio option, if any.
    ratio: Option<&'static str>,
    /// The file must stay a delta for the whole round (no compaction expected).
    stays_delta: bool,
}

/// One round's state: the mount, the model and the open descriptors.
struct Round {
    // The descriptors are dropped before the mount (fields drop in order).
    fd: Option<OwnedFd>,
    dfd: Option<OwnedFd>,
    m: DeltaMount,
    cfg: Cfg,
    rng: Rng,
    /// Expected bytes of the file.
    model: Vec<u8>,
    /// Smallest size the file was ever truncated to (the delta's lower limit).
    limit: u64,
    /// Blocks (of cfg.block) written since the start: the map may claim only these.
    touched: BTreeSet<u64>,
    /// Names of the file (first: the one the fds were opened by).
    names: Vec<String>,
    mode: u32,
    owner: (u32, u32),
    history: Vec<String>,
    serial: u64,
    /// Counters for the summary.
    ops: usize,
    remounts: usize,
    delta_remounts: usize,
    zero_range_unsupported: usize,
}

fn fail(r: &Round, what: &str) -> ! {
    let hist = r.history.join("\n    ");
    panic!(
        "{what}\n  config {:?}, op #{}, names {:?}\n  last ops:\n    {hist}\n  daemon log tail:\n{}",
        r.cfg,
        r.ops,
        r.names,
        tail(&r.m.log(), 15)
    );
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn pread_full(fd: &OwnedFd, len: usize, off: u64) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let got = sys::pread(fd, len - out.len(), off + out.len() as u64)?;
        if got.is_empty() {
            break;
        }
        out.extend_from_slice(&got);
    }
    Ok(out)
}

/// pread into a page-aligned buffer (O_DIRECT descriptors).
fn pread_direct(fd: &OwnedFd, len: usize, off: u64) -> Result<Vec<u8>, Errno> {
    let layout = std::alloc::Layout::from_size_align(len.max(1), 4096).unwrap();
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!ptr.is_null());
    let mut done = 0usize;
    let res = loop {
        if done >= len {
            break Ok(());
        }
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                ptr.add(done).cast(),
                len - done,
                (off + done as u64) as libc::off_t,
            )
        };
        if n < 0 {
            break Err(Errno::last());
        }
        if n == 0 {
            break Ok(());
        }
        done += n as usize;
    };
    let v = unsafe { std::slice::from_raw_parts(ptr, done) }.to_vec();
    unsafe { std::alloc::dealloc(ptr, layout) };
    res.map(|()| v)
}

fn copy_range(
    src: &OwnedFd,
    off_in: u64,
    dst: &OwnedFd,
    off_out: u64,
    len: u64,
) -> Result<u64, Errno> {
    let mut done = 0u64;
    while done < len {
        let mut oi = (off_in + done) as libc::loff_t;
        let mut oo = (off_out + done) as libc::loff_t;
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut oi,
                dst.as_raw_fd(),
                &mut oo,
                (len - done) as usize,
                0,
            )
        };
        if n < 0 {
            return Err(Errno::last());
        }
        if n == 0 {
            break;
        }
        done += n as u64;
    }
    Ok(done)
}

impl Round {
    fn new(cfg: Cfg, seed: u64) -> Round {
        let mut opts = Vec::new();
        if cfg.explicit_block || cfg.block != 4096 {
            opts.push(format!("delta_block={}", cfg.block));
        }
        if let Some(r) = cfg.ratio {
            opts.push(format!("compact_ratio={r}"));
        }
        let m = DeltaMount::new("dm", &opts.join(","));
        let model = write_lower(&m.lower.join("data/f.img"), seed ^ 0x10e7, cfg.size);
        // A second, untouched lower file: it must keep reading right all along.
        write_lower(&m.lower.join("data/other.img"), seed ^ 0x07e5, 2 * MIB);
        let mut r = Round {
            m,
            cfg,
            rng: Rng::new(seed),
            limit: cfg.size,
            model,
            touched: BTreeSet::new(),
            names: vec!["data/f.img".to_string()],
            mode: 0o644,
            owner: (0, 0),
            fd: None,
            dfd: None,
            history: Vec::new(),
            serial: 0,
            ops: 0,
            remounts: 0,
            delta_remounts: 0,
            zero_range_unsupported: 0,
        };
        r.m.mount();
        r.open();
        r
    }

    fn note(&mut self, s: String) {
        if self.history.len() >= 25 {
            self.history.remove(0);
        }
        self.history.push(s);
    }

    fn path(&self) -> std::path::PathBuf {
        self.m.p(&self.names[0])
    }

    fn open(&mut self) {
        let p = self.path();
        self.fd = Some(
            sys::open(&p, libc::O_RDWR, 0)
                .unwrap_or_else(|e| fail(self, &format!("open {}: {e}", p.display()))),
        );
        self.dfd = Some(
            sys::open(&p, libc::O_RDONLY | libc::O_DIRECT, 0)
                .unwrap_or_else(|e| fail(self, &format!("open O_DIRECT {}: {e}", p.display()))),
        );
    }

    fn close(&mut self) {
        self.fd = None;
        self.dfd = None;
    }

    fn fd(&self) -> &OwnedFd {
        self.fd.as_ref().unwrap()
    }

    fn size(&self) -> u64 {
        self.model.len() as u64
    }

    fn max_size(&self) -> u64 {
        self.cfg.size * 2 + MIB
    }

    /// Compare `len` bytes at `off` (read through the page cache or O_DIRECT) with the model.
    fn check_range(&mut self, off: u64, len: u64, direct: bool, what: &str) {
        let len = len.min(256 * KIB) as usize;
        // O_DIRECT I/O is aligned (a whole file may be passed through to ext4, which
        // refuses unaligned direct I/O with EINVAL).
        let got = if direct {
            let a = off / 4096 * 4096;
            let e = (off + len as u64).div_ceil(4096) * 4096;
            pread_direct(self.dfd.as_ref().unwrap(), (e - a) as usize, a).map(|v| {
                let from = ((off - a) as usize).min(v.len());
                v[from..(from + len).min(v.len())].to_vec()
            })
        } else {
            pread_full(self.fd(), len, off)
        };
        let got = got.unwrap_or_else(|e| {
            fail(
                self,
                &format!("{what}: pread({off}, {len}) direct={direct}: {e}"),
            )
        });
        let s = self.model.len() as u64;
        let want = if off >= s {
            &[][..]
        } else {
            &self.model[off as usize..(off as usize + len).min(s as usize)]
        };
        if let Some(d) = first_diff(want, &got) {
            fail(self, &format!("{what}: pread({off}, {len}) direct={direct} differs from the model: {d} (offsets relative to {off})"));
        }
    }

    /// Check the window around an operation's range, and the size.
    fn verify(&mut self, off: u64, len: u64, what: &str) {
        let a = off.saturating_sub(self.rng.below(300));
        let b = off + len + self.rng.below(300);
        let direct = self.rng.chance(50);
        self.check_range(a, b - a, direct, what);
        let st = sys::fstat(self.fd()).unwrap_or_else(|e| fail(self, &format!("fstat: {e}")));
        if st.st_size as u64 != self.size() {
            fail(
                self,
                &format!(
                    "{what}: st_size {} but the model has {}",
                    st.st_size,
                    self.size()
                ),
            );
        }
    }

    fn touch(&mut self, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        let b = self.cfg.block;
        for blk in off / b..=(off + len - 1) / b {
            self.touched.insert(blk);
        }
    }

    fn set_len(&mut self, n: u64) {
        if n < self.size() {
            self.limit = self.limit.min(n);
            let keep = n.div_ceil(self.cfg.block);
            self.touched.retain(|b| *b < keep);
        }
        self.model.resize(n as usize, 0);
    }

    fn model_write(&mut self, off: u64, data: &[u8]) {
        let end = off as usize + data.len();
        if end > self.model.len() {
            self.model.resize(end, 0);
        }
        self.model[off as usize..end].copy_from_slice(data);
        self.touch(off, data.len() as u64);
    }

    fn model_zero(&mut self, off: u64, end: u64) {
        if end <= off {
            return;
        }
        if end > self.size() {
            self.model.resize(end as usize, 0);
        }
        self.model[off as usize..end as usize].fill(0);
        self.touch(off, end - off);
    }

    /// A random offset: mostly in a few hot regions (so the delta stays a delta for a
    /// while), sometimes anywhere, sometimes at a block boundary or past the end.
    fn offset(&mut self) -> u64 {
        let s = self.size().max(1);
        let b = self.cfg.block;
        let base = match self.rng.below(100) {
            0..=87 => {
                let hot = self.rng.below(6);
                let region = (self.cfg.size / 7) * (hot + 1);
                region + self.rng.below(24 * 4096)
            }
            88..=95 => self.rng.below(s),
            _ => s.saturating_sub(self.rng.below(3 * b)) + self.rng.below(2 * b),
        };
        let base = base.min(self.max_size() - 256 * KIB);
        match self.rng.below(4) {
            0 => base / b * b,
            1 => (base / b * b).saturating_sub(self.rng.below(64) + 1),
            _ => base,
        }
    }

    fn length(&mut self) -> u64 {
        match self.rng.below(100) {
            0..=54 => 1 + self.rng.below(600),
            55..=84 => 1 + self.rng.below(2 * self.cfg.block),
            85..=94 => self.cfg.block * (1 + self.rng.below(3)),
            _ => 1 + self.rng.below(200 * KIB),
        }
    }

    fn data(&mut self, len: u64) -> Vec<u8> {
        let s = self.rng.next_u64();
        pattern(s, 0, len as usize)
    }

    fn step(&mut self) {
        self.ops += 1;
        let k = self.rng.below(1000);
        match k {
            0..=299 => self.op_read(),
            300..=649 => self.op_write(),
            650..=679 => self.op_truncate(),
            680..=739 => self.op_fallocate(),
            740..=769 => self.op_mmap(),
            770..=799 => self.op_fsync(),
            800..=809 => self.op_copy_out(),
            810..=819 => self.op_copy_in(),
            820..=824 => self.op_rename(),
            825..=829 => self.op_link(),
            830..=839 => self.op_chmod_utimes(),
            840..=859 => self.op_reopen(),
            860..=869 => self.op_read_other_name(),
            870..=889 => self.op_seek(),
            _ => self.op_read(),
        }
    }

    fn run(&mut self, ops: usize) {
        self.small_write_check();
        let mut next_remount = self.ops + 1500 + self.rng.below(3000) as usize;
        while self.ops < ops {
            self.step();
            if self.ops >= next_remount {
                self.remount();
                next_remount = self.ops + 1500 + self.rng.below(3000) as usize;
            }
        }
        self.remount();
        self.close();
        self.m.unmount();
    }
}

/// Bytes allocated under a directory (like `du`).
fn walk_alloc(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let st = sys::lstat(&e.path()).unwrap();
        total += st.st_blocks as u64 * 512;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            total += walk_alloc(&e.path());
        }
    }
    total
}

fn run_test(test: &'static str, default_ops: usize, cfgs: &[Cfg], rounds_per_cfg: usize) {
    let seed = seeds(1)[0];
    let total = ops_budget(default_ops);
    let _g = SeedGuard {
        seed,
        test,
        ops: total,
    };
    let rounds = cfgs.len() * rounds_per_cfg;
    let per_round = (total / rounds).max(50);
    let start = Instant::now();
    let mut rng = Rng::new(seed);
    let (mut ops, mut remounts, mut delta_remounts, mut zr) = (0, 0, 0, 0);
    for i in 0..rounds {
        let cfg = cfgs[i % cfgs.len()];
        let mut r = Round::new(cfg, rng.next_u64());
        r.run(per_round);
        ops += r.ops;
        remounts += r.remounts;
        delta_remounts += r.delta_remounts;
        zr += r.zero_range_unsupported;
    }
    eprintln!(
        "{test}: seed {seed:#x}: {ops} operations in {rounds} rounds, {remounts} remounts ({delta_remounts} with the file still a delta), ZERO_RANGE refused {zr} times, {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

/// 4K blocks (the default, given explicitly or not), files from 1.5 MiB to 8 MiB,
/// default compaction (files may be compacted in the middle of a round).
#[test]
fn model_block4k() {
    let c = |size, explicit| Cfg {
        size,
        block: 4096,
        explicit_block: explicit,
        ratio: None,
        stays_delta: false,
    };
    run_test(
        "model_block4k",
        DEFAULT_OPS_4K,
        &[
            c(3 * MIB / 2, false),
            c(2 * MIB + 123, true),
            c(3 * MIB + 1000, false),
            c(5 * MIB, true),
            c(8 * MIB, false),
        ],
        4,
    );
}

/// 64K blocks with compact_ratio=1.0: deltas stay deltas for the whole round.
#[test]
fn model_block64k_stays_delta() {
    let c = |size| Cfg {
        size,
        block: 64 * KIB,
        explicit_block: true,
        ratio: Some("1.0"),
        stays_delta: true,
    };
    run_test(
        "model_block64k_stays_delta",
        DEFAULT_OPS_64K,
        &[c(3 * MIB / 2), c(4 * MIB + 5), c(8 * MIB)],
        2,
    );
}
