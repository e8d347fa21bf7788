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

    fn op_read(&mut self) {
        let off = self.offset();
        let len = self.length();
        let direct = self.rng.chance(40);
        self.note(format!("pread off={off} len={len} direct={direct}"));
        self.check_range(off, len, direct, "pread");
    }

    fn op_write(&mut self) {
        let off = self.offset();
        let len = self.length();
        let data = self.data(len);
        self.note(format!("pwrite off={off} len={len}"));
        if let Err(e) = sys::pwrite_all(self.fd(), &data, off) {
            fail(self, &format!("pwrite({off}, {len}): {e}"));
        }
        self.model_write(off, &data);
        self.verify(off, len, "after pwrite");
    }

    fn op_truncate(&mut self) {
        let s = self.size();
        let b = self.cfg.block;
        let n = if self.rng.chance(50) && s > 0 {
            // Down: sometimes a little, sometimes a lot, sometimes to a block boundary.
            match self.rng.below(4) {
                0 => s - self.rng.below(s.min(3 * b)) - 1,
                1 => self.rng.below(s),
                2 => self.rng.below(s) / b * b,
                _ => s.saturating_sub(1),
            }
        } else {
            (s + 1 + self.rng.below(MIB)).min(self.max_size())
        };
        let n = if n == 0 && self.cfg.stays_delta { 1 } else { n };
        self.note(format!("ftruncate {s} -> {n}"));
        if let Err(e) = sys::ftruncate(self.fd(), n) {
            fail(self, &format!("ftruncate({n}): {e}"));
        }
        self.set_len(n);
        let at = n.min(s).saturating_sub(2 * b);
        self.verify(at, 4 * b, "after ftruncate");
    }

    fn op_fallocate(&mut self) {
        let off = self.offset();
        let len = self.length();
        let keep = libc::FALLOC_FL_KEEP_SIZE;
        let (mode, name) = match self.rng.below(6) {
            0 => (0, "plain"),
            1 => (keep, "KEEP_SIZE"),
            2 | 3 => (libc::FALLOC_FL_PUNCH_HOLE | keep, "PUNCH_HOLE|KEEP_SIZE"),
            4 => (libc::FALLOC_FL_ZERO_RANGE, "ZERO_RANGE"),
            _ => (libc::FALLOC_FL_ZERO_RANGE | keep, "ZERO_RANGE|KEEP_SIZE"),
        };
        self.note(format!("fallocate {name} off={off} len={len}"));
        match sys::fallocate(self.fd(), mode, off, len) {
            Ok(()) => {}
            Err(Errno::EOPNOTSUPP) if mode & libc::FALLOC_FL_ZERO_RANGE != 0 => {
                // The kernel's FUSE may not pass ZERO_RANGE on; nothing changed then.
                self.zero_range_unsupported += 1;
                self.verify(off, len, "after refused ZERO_RANGE");
                return;
            }
            Err(e) => fail(self, &format!("fallocate {name} ({off}, {len}): {e}")),
        }
        let end = off + len;
        let s = self.size();
        if mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0 {
            let stop = if mode & keep != 0 { end.min(s) } else { end };
            self.model_zero(off, stop);
        } else if mode & keep == 0 && end > s {
            self.set_len(end);
        }
        self.verify(off, len, "after fallocate");
    }

    fn op_mmap(&mut self) {
        let s = self.size();
        if s == 0 {
            return self.op_write();
        }
        let off = self.offset().min(s - 1);
        let len = self.length().min(s - off);
        let data = self.data(len);
        self.note(format!("mmap write off={off} len={len} + msync"));
        let page = 4096u64;
        let map_off = off / page * page;
        let map_len = (off + len - map_off) as usize;
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd().as_raw_fd(),
                map_off as libc::off_t,
            );
            if p == libc::MAP_FAILED {
                let e = Errno::last();
                fail(self, &format!("mmap({map_off}, {map_len}): {e}"));
            }
            let at = (off - map_off) as usize;
            std::ptr::copy_nonoverlapping(data.as_ptr(), p.cast::<u8>().add(at), data.len());
            if libc::msync(p, map_len, libc::MS_SYNC) != 0 {
                let e = Errno::last();
                libc::munmap(p, map_len);
                fail(self, &format!("msync: {e}"));
            }
            libc::munmap(p, map_len);
        }
        self.model_write(off, &data);
        // Writeback writes whole pages: the blocks of the pages may be claimed.
        let pe = (off + len).div_ceil(page) * page;
        self.touch(map_off, pe.min(s) - map_off);
        self.verify(off, len, "after mmap write + msync");
    }

    fn op_fsync(&mut self) {
        let data = self.rng.chance(30);
        self.note(format!("fsync datasync={data}"));
        let r = if data {
            let r = unsafe { libc::fdatasync(self.fd().as_raw_fd()) };
            if r < 0 {
                Err(Errno::last())
            } else {
                Ok(())
            }
        } else {
            sys::fsync(self.fd())
        };
        if let Err(e) = r {
            fail(self, &format!("fsync: {e}"));
        }
        let off = self.offset();
        self.verify(off, 64, "after fsync");
    }

    /// copy_file_range from the delta into a new file.
    fn op_copy_out(&mut self) {
        let s = self.size();
        let off = self.rng.below(s.max(1));
        let len = self.length().min(s - off.min(s));
        self.serial += 1;
        let name = format!("out{}", self.serial);
        self.note(format!(
            "copy_file_range delta[{off}..+{len}] -> new {name}"
        ));
        let dst = sys::open(
            &self.m.p(&name),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o644,
        )
        .unwrap_or_else(|e| fail(self, &format!("create {name}: {e}")));
        let n = copy_range(self.fd(), off, &dst, 0, len)
            .unwrap_or_else(|e| fail(self, &format!("copy_file_range out: {e}")));
        if n != len {
            fail(self, &format!("copy_file_range out copied {n} of {len}"));
        }
        let got = pread_full(&dst, len as usize + 10, 0).unwrap();
        let want = self.model[off as usize..(off + len) as usize].to_vec();
        if let Some(d) = first_diff(&want, &got) {
            fail(
                self,
                &format!("copy_file_range out: the new file differs from the model: {d}"),
            );
        }
        drop(dst);
        let _ = sys::unlink(&self.m.p(&name));
    }

    /// copy_file_range from a new file into the delta.
    fn op_copy_in(&mut self) {
        let off = self.offset();
        let len = self.length();
        let data = self.data(len);
        self.serial += 1;
        let name = format!("in{}", self.serial);
        self.note(format!(
            "copy_file_range new {name} ({len} bytes) -> delta at {off}"
        ));
        let src = sys::open(
            &self.m.p(&name),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o644,
        )
        .unwrap_or_else(|e| fail(self, &format!("create {name}: {e}")));
        sys::pwrite_all(&src, &data, 0).unwrap();
        let n = copy_range(&src, 0, self.fd(), off, len)
            .unwrap_or_else(|e| fail(self, &format!("copy_file_range in: {e}")));
        if n != len {
            fail(self, &format!("copy_file_range in copied {n} of {len}"));
        }
        drop(src);
        let _ = sys::unlink(&self.m.p(&name));
        self.model_write(off, &data);
        self.verify(off, len, "after copy_file_range in");
    }

    fn op_rename(&mut self) {
        self.serial += 1;
        let to = if self.rng.chance(50) {
            format!("data/r{}.img", self.serial)
        } else {
            let _ = sys::mkdir(&self.m.p("moved"), 0o755);
            format!("moved/r{}.img", self.serial)
        };
        let i = self.rng.below(self.names.len() as u64) as usize;
        let from = self.names[i].clone();
        self.note(format!("rename {from} -> {to}"));
        if let Err(e) = sys::rename2(&self.m.p(&from), &self.m.p(&to), 0) {
            fail(self, &format!("rename {from} -> {to}: {e}"));
        }
        self.names[i] = to;
        // More writes through the kept fd and a read through the new name follow.
        self.op_write();
        self.op_read_other_name();
    }

    fn op_link(&mut self) {
        if self.names.len() >= 3 {
            // Drop an extra name instead (never the one the fds were opened by).
            let i = 1 + self.rng.below(self.names.len() as u64 - 1) as usize;
            let n = self.names.remove(i);
            self.note(format!("unlink extra name {n}"));
            if let Err(e) = sys::unlink(&self.m.p(&n)) {
                fail(self, &format!("unlink {n}: {e}"));
            }
            return self.op_read_other_name();
        }
        self.serial += 1;
        let to = format!("data/l{}.img", self.serial);
        let from = self.names[0].clone();
        self.note(format!("link {from} -> {to}"));
        if let Err(e) = sys::link(&self.m.p(&from), &self.m.p(&to)) {
            fail(self, &format!("link {from} -> {to}: {e}"));
        }
        self.names.push(to);
        self.op_write();
        self.op_read_other_name();
    }

    fn op_chmod_utimes(&mut self) {
        let name = self.names[self.rng.below(self.names.len() as u64) as usize].clone();
        let p = self.m.p(&name);
        if self.rng.chance(25) {
            let owner = *self
                .rng
                .pick(&[(0, 0), (1000, 1000), (65534, 100), (0, 1000)]);
            self.note(format!("chown {name} {owner:?}"));
            if let Err(e) = sys::lchown(&p, owner.0, owner.1) {
                fail(self, &format!("chown {name}: {e}"));
            }
            self.owner = owner;
        } else if self.rng.chance(50) {
            let mode = *self.rng.pick(&[0o600, 0o640, 0o644, 0o664, 0o755]);
            self.note(format!("chmod {name} {mode:o}"));
            if let Err(e) = sys::chmod(&p, mode) {
                fail(self, &format!("chmod {name}: {e}"));
            }
            self.mode = mode;
        } else {
            let t = (
                1_600_000_000 + self.rng.below(100_000_000) as i64,
                self.rng.below(999_999_999) as i64,
            );
            self.note(format!("utimes {name} {t:?}"));
            if let Err(e) = sys::lutimens(&p, t, t) {
                fail(self, &format!("utimens {name}: {e}"));
            }
            let st = sys::stat(&p).unwrap();
            if (st.st_mtime, st.st_mtime_nsec) != t {
                fail(
                    self,
                    &format!(
                        "utimens {name}: mtime reads {}.{} not {t:?}",
                        st.st_mtime, st.st_mtime_nsec
                    ),
                );
            }
        }
        let st = sys::stat(&p).unwrap();
        if st.st_mode & 0o7777 != self.mode
            || st.st_size as u64 != self.size()
            || (st.st_uid, st.st_gid) != self.owner
        {
            fail(
                self,
                &format!(
                    "stat {name} after chmod/utimes: mode {:o} size {}, want {:o} {}",
                    st.st_mode & 0o7777,
                    st.st_size,
                    self.mode,
                    self.size()
                ),
            );
        }
        let off = self.offset();
        self.verify(off, 4096, "after chmod/utimes");
    }

    /// SEEK_DATA / SEEK_HOLE: answers consistent with the model (data may be reported
    /// anywhere; a hole only where the model has zeros; ENXIO at or past the end).
    fn op_seek(&mut self) {
        let s = self.size();
        let off = if self.rng.chance(10) {
            s + self.rng.below(3)
        } else {
            self.offset().min(s + 1)
        };
        let hole = self.rng.chance(50);
        let whence = if hole {
            libc::SEEK_HOLE
        } else {
            libc::SEEK_DATA
        };
        self.note(format!(
            "lseek {} {off}",
            if hole { "SEEK_HOLE" } else { "SEEK_DATA" }
        ));
        let r = sys::lseek(self.fd(), off as i64, whence);
        let ok = match r {
            Err(Errno::ENXIO) => {
                off >= s || (!hole && self.model[off as usize..].iter().all(|b| *b == 0))
            }
            Err(_) => false,
            Ok(p) => {
                let p = p as u64;
                if off >= s {
                    false
                } else if hole {
                    p >= off && p <= s
                } else {
                    p >= off
                        && p < s
                        && self.model[off as usize..p as usize].iter().all(|b| *b == 0)
                }
            }
        };
        if !ok {
            fail(
                self,
                &format!(
                    "lseek({off}, {}) on a {s} byte file gave {r:?}",
                    if hole { "SEEK_HOLE" } else { "SEEK_DATA" }
                ),
            );
        }
    }

    fn op_reopen(&mut self) {
        self.note("close + reopen".into());
        self.close();
        self.open();
        let off = self.offset();
        self.verify(off, 8192, "after reopen");
    }

    /// Read through another name of the file (a separate open).
    fn op_read_other_name(&mut self) {
        let name = self.names[self.rng.below(self.names.len() as u64) as usize].clone();
        let off = self.offset();
        let len = self.length();
        self.note(format!("pread via {name} off={off} len={len}"));
        let fd = sys::open(&self.m.p(&name), libc::O_RDONLY, 0)
            .unwrap_or_else(|e| fail(self, &format!("open {name}: {e}")));
        let got = pread_full(&fd, len as usize, off)
            .unwrap_or_else(|e| fail(self, &format!("pread {name}: {e}")));
        let s = self.model.len();
        let want = &self.model[(off as usize).min(s)..((off + len) as usize).min(s)];
        if let Some(d) = first_diff(want, &got) {
            fail(self, &format!("pread via {name} off={off}: {d}"));
        }
    }

    /// Unmount, fsck, mount again; whole-file comparison through every name; block map,
    /// lower limit and allocation checks.
    fn remount(&mut self) {
        self.remounts += 1;
        self.note("remount".into());
        self.close();
        self.m.unmount();
        let (ok, out) = self.m.fsck(false);
        if !ok {
            fail(
                self,
                &format!("strata fsck after unmount is not clean:\n{out}"),
            );
        }
        self.m.mount();
        self.check_whole("after remount");
        self.check_upper("after remount");
        self.open();
    }

    fn check_whole(&mut self, what: &str) {
        for name in self.names.clone() {
            let p = self.m.p(&name);
            let got = std::fs::read(&p)
                .unwrap_or_else(|e| fail(self, &format!("{what}: read {name}: {e}")));
            if let Some(d) = first_diff(&self.model, &got) {
                fail(
                    self,
                    &format!("{what}: whole file {name} differs from the model: {d}"),
                );
            }
            let st = sys::stat(&p).unwrap();
            if st.st_mode & 0o7777 != self.mode || (st.st_uid, st.st_gid) != self.owner {
                fail(
                    self,
                    &format!(
                        "{what}: {name} mode {:o} owner {}:{}, want {:o} {:?}",
                        st.st_mode & 0o7777,
                        st.st_uid,
                        st.st_gid,
                        self.mode,
                        self.owner
                    ),
                );
            }
        }
        let other = std::fs::read(self.m.p("data/other.img")).unwrap();
        if other.len() as u64 != 2 * MIB {
            fail(
                self,
                &format!(
                    "{what}: the untouched lower file reads {} bytes",
                    other.len()
                ),
            );
        }
    }

    fn check_upper(&mut self, what: &str) {
        let name = self.names[0].clone();
        let meta = self.m.meta(&name).unwrap_or_default();
        let Some(delta) = meta_line(&meta, "delta") else {
            if self.cfg.stays_delta && self.limit > 0 {
                fail(self, &format!("{what}: the file is no longer a delta (compact_ratio=1.0, block list short): meta {meta:?}"));
            }
            return;
        };
        self.delta_remounts += 1;
        let f: Vec<&str> = delta.split_whitespace().collect();
        if f.len() != 3 || f[0] != "1" || f[1] != self.cfg.block.to_string() {
            fail(
                self,
                &format!(
                    "{what}: delta line {delta:?}, want version 1 block {}",
                    self.cfg.block
                ),
            );
        }
        let limit: u64 = f[2].parse().unwrap();
        if limit != self.limit {
            fail(self, &format!("{what}: delta lower limit {limit}, but the smallest size the file was truncated to is {}", self.limit));
        }
        let ranges = meta_blocks(&meta);
        let mut claimed = 0;
        for (a, b) in &ranges {
            for blk in *a..*b {
                claimed += 1;
                if !self.touched.contains(&blk) {
                    fail(self, &format!("{what}: the block map claims block {blk}, never written since the delta was made (map {ranges:?})"));
                }
            }
        }
        let alloc = self.m.upper_allocated(&name);
        let allowed = claimed * self.cfg.block + 64 * KIB;
        if alloc > allowed {
            fail(self, &format!("{what}: upper file allocates {alloc} bytes for {claimed} blocks of {} (allowed {allowed}): not a delta", self.cfg.block));
        }
    }

    /// First thing of a round: one aligned 4 KiB write, remount, the upper must be small.
    fn small_write_check(&mut self) {
        let blk = self.rng.below(self.cfg.size / 4096 - 1);
        let off = blk * 4096;
        let data = self.data(4096);
        self.note(format!("first write: 4 KiB at {off}"));
        sys::pwrite_all(self.fd(), &data, off).unwrap();
        self.model_write(off, &data);
        self.ops += 1;
        self.remount();
        let name = self.names[0].clone();
        let meta = self.m.meta(&name).unwrap_or_default();
        if meta_line(&meta, "delta").is_none() {
            fail(
                self,
                &format!(
                    "one 4 KiB write into a {} byte lower file did not make a delta: meta {meta:?}",
                    self.cfg.size
                ),
            );
        }
        let alloc = self.m.upper_allocated(&name);
        let max = (64 * KIB).max(self.cfg.block + 16 * KIB);
        if alloc > max {
            fail(self, &format!("one 4 KiB write into a {} byte lower file: upper allocates {alloc} bytes (> {max})", self.cfg.size));
        }
        let total: u64 = walk_alloc(&self.m.upper);
        if total > max + 64 * KIB {
            fail(
                self,
                &format!("one 4 KiB write: the upper dir allocates {total} bytes"),
            );
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
