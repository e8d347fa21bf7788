//! The operations of stack_random: generated from the seed, run on one mount, outcome
//! as comparable text (errno included, and whether st_ino stayed where it must).

use strata_tests::random_ops::{self, run_checked, InoCheck};
use strata_tests::{fnv1a, Errno, FileKind, Mounted, Rng};

/// A small namespace so that operations collide with each other and with lower entries.
const NAMES: &[&str] = &["a", "b", "c", "f", "g"];
/// Where the fixture's large files are, so that writes often land in one (as deltas).
pub const BIG: &[&str] = &["f", "c/b", "a/g", "c/a/a", "g/f"];
const LINK_TARGETS: &[&str] = &["f", "a", "a/f", "zz", "b/c", "c/f"];
const XATTRS: &[&str] = &["user.a", "user.b"];
/// strata makes block deltas of lower files of at least 1 MiB (`delta_threshold`).
pub const MIB: u64 = 1 << 20;

/// One operation; its Debug form is the replay log.
#[derive(Clone, Debug)]
pub enum Op {
    Stat(String),
    Read(String),
    ReadAt(String, u64, usize),
    List(String),
    Readlink(String),
    Put(String, usize, u8),
    /// A new large file (2–3.2 MiB of a pattern): a large lower file after the rotation.
    PutBig(String, u64, u8),
    WriteAt(String, u64, usize, u8),
    Append(String, usize, u8),
    Truncate(String, u64),
    Create(String),
    Unlink(String),
    Mkdir(String, u32),
    Rmdir(String),
    /// `rm -rf` then `mkdir`: an opaque directory over what the lowers hold.
    Recreate(String),
    Rename(String, String, u32),
    Link(String, String),
    Symlink(String, String),
    Mkfifo(String),
    Chmod(String, u32),
    Chown(String, u32, u32),
    SetXattr(String, String, u8),
    RemoveXattr(String, String),
}

fn gen_path(r: &mut Rng) -> String {
    random_ops::gen_path(r, NAMES)
}

/// A path that is often one of the large files.
fn big_path(r: &mut Rng) -> String {
    if r.chance(65) {
        r.pick(BIG).to_string()
    } else {
        gen_path(r)
    }
}

/// Offset and length of a write into a large file: 4 KiB aligned whole blocks, or
/// anywhere with any length (a block completed from below first).
fn big_extent(r: &mut Rng) -> (u64, usize) {
    if r.chance(50) {
        (4096 * r.below(820), 4096 * (1 + r.below(3) as usize))
    } else {
        (r.below(3_400_000), 1 + r.below(9000) as usize)
    }
}

/// A truncation length: small, or large (aligned or not) so a delta is cut or grown.
fn trunc_len(r: &mut Rng) -> u64 {
    match r.below(3) {
        0 => r.below(15_000),
        1 => 4096 * (200 + r.below(700)),
        _ => MIB + r.below(2_600_000),
    }
}

/// The next operation from `r`.
pub fn gen_op(r: &mut Rng) -> Op {
    let p = gen_path(r);
    let fill = b'a' + r.below(26) as u8;
    match r.below(100) {
        0..=4 => Op::Stat(p),
        5..=8 => Op::Read(p),
        9..=11 => {
            let (off, len) = big_extent(r);
            Op::ReadAt(big_path(r), off, len)
        }
        12..=14 => Op::List(p),
        15 => Op::Readlink(p),
        16..=19 => Op::Put(p, r.below(5000) as usize, fill),
        20..=21 => Op::PutBig(big_path(r), 2 * MIB + r.below(1_300_000), fill),
        22..=24 => Op::WriteAt(p, r.below(12_000), 1 + r.below(3000) as usize, fill),
        25..=35 => {
            let (off, len) = big_extent(r);
            Op::WriteAt(big_path(r), off, len, fill)
        }
        36..=38 => Op::Append(big_path(r), 1 + r.below(5000) as usize, fill),
        39..=43 => Op::Truncate(big_path(r), trunc_len(r)),
        44..=45 => Op::Create(p),
        46..=50 => Op::Unlink(p),
        51..=54 => Op::Mkdir(p, *r.pick(&[0o755, 0o700, 0o750])),
        55..=57 => Op::Rmdir(p),
        58..=60 => Op::Recreate(p),
        61..=71 => {
            let flags = match r.below(10) {
                0..=6 => 0,
                7..=8 => 1, // RENAME_NOREPLACE
                _ => 2,     // RENAME_EXCHANGE
            };
            Op::Rename(p, gen_path(r), flags)
        }
        72..=78 => {
            let a = if r.chance(40) { big_path(r) } else { p };
            Op::Link(a, gen_path(r))
        }
        79..=81 => Op::Symlink(r.pick(LINK_TARGETS).to_string(), p),
        82 => Op::Mkfifo(p),
        83..=87 => Op::Chmod(p, *r.pick(&[0o644, 0o600, 0o755, 0o711, 0o4755])),
        88..=89 => Op::Chown(p, *r.pick(&[0, 1000]), *r.pick(&[0, 1000, 2000])),
        90..=96 => Op::SetXattr(p, r.pick(XATTRS).to_string(), fill),
        _ => Op::RemoveXattr(p, r.pick(XATTRS).to_string()),
    }
}

/// Deterministic bytes for large files.
pub fn pattern(len: u64, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 11) as u8) ^ seed)
        .collect()
}

/// Run one operation; the outcome as comparable text, including whether st_ino stayed
/// put where it must (in-place changes and copy-up, rename, link).
pub fn run(m: &Mounted, op: &Op) -> String {
    let check = match op {
        Op::WriteAt(p, ..)
        | Op::Append(p, ..)
        | Op::Truncate(p, _)
        | Op::Chown(p, ..)
        | Op::Chmod(p, _)
        | Op::SetXattr(p, ..)
        | Op::RemoveXattr(p, _) => InoCheck::Kept(p),
        Op::Rename(a, b, flags) => InoCheck::Rename(a, b, *flags),
        Op::Link(a, b) => InoCheck::Link(a, b),
        _ => InoCheck::None,
    };
    run_checked(m, check, || run_op(m, op))
}

fn run_op(m: &Mounted, op: &Op) -> String {
    let hash = |d: Vec<u8>| (d.len(), fnv1a(&d));
    match op {
        Op::Stat(p) => format!("{:?}", m.stat(p)),
        Op::Read(p) => format!("{:?}", m.read(p).map(hash)),
        Op::ReadAt(p, off, n) => format!("{:?}", m.pread(p, *n, *off).map(hash)),
        Op::List(p) => format!("{:?}", m.readdir(p)),
        Op::Readlink(p) => format!("{:?}", m.readlink(p)),
        Op::Put(p, n, c) => format!("{:?}", m.put(p, vec![*c; *n])),
        Op::PutBig(p, n, c) => format!("{:?} {:?}", m.put(p, pattern(*n, *c)), m.stat(p)),
        Op::WriteAt(p, off, n, c) => {
            format!("{:?} {:?}", m.write_at(p, *off, vec![*c; *n]), m.stat(p))
        }
        Op::Append(p, n, c) => format!("{:?} {:?}", m.append(p, vec![*c; *n]), m.stat(p)),
        Op::Truncate(p, n) => format!("{:?} {:?}", m.truncate(p, *n), m.stat(p)),
        Op::Create(p) => format!("{:?}", m.create(p, 0o640)),
        Op::Unlink(p) => format!("{:?}", m.unlink(p)),
        Op::Mkdir(p, mode) => format!("{:?}", m.mkdir(p, *mode)),
        Op::Rmdir(p) => format!("{:?}", m.rmdir(p)),
        Op::Recreate(p) => {
            let rm = rm_rf(m, p, 0);
            format!("{rm:?} {:?} {:?}", m.mkdir(p, 0o755), m.readdir(p))
        }
        Op::Rename(a, b, 0) => format!("{:?}", m.rename(a, b)),
        Op::Rename(a, b, 1) => format!("{:?}", m.rename_noreplace(a, b)),
        Op::Rename(a, b, _) => format!("{:?}", m.rename_exchange(a, b)),
        Op::Link(a, b) => format!("{:?} {:?}", m.link(a, b), m.stat(b)),
        Op::Symlink(t, p) => format!("{:?}", m.symlink(t, p)),
        Op::Mkfifo(p) => format!("{:?}", m.mkfifo(p, 0o644)),
        Op::Chmod(p, mode) => format!("{:?} {:?}", m.chmod(p, *mode), m.stat_follow(p)),
        Op::Chown(p, u, g) => format!("{:?} {:?}", m.chown(p, *u, *g), m.stat(p)),
        Op::SetXattr(p, n, c) => format!("{:?} {:?}", m.setxattr(p, n, &[*c; 3]), m.xattrs(p)),
        Op::RemoveXattr(p, n) => format!("{:?} {:?}", m.removexattr(p, n), m.xattrs(p)),
    }
}

/// `rm -rf p` through the mount: the number of entries removed, or the first error.
fn rm_rf(m: &Mounted, p: &str, depth: usize) -> Result<usize, Errno> {
    // The namespace is five names deep at most in practice; the bound only stops a
    // directory loop (which would be a bug of its own) from hanging the test.
    if depth > 64 {
        return Err(Errno::ELOOP);
    }
    let st = m.stat(p)?;
    if st.kind != FileKind::Dir {
        m.unlink(p)?;
        return Ok(1);
    }
    let mut n = 0;
    for (name, _) in m.readdir(p)? {
        n += rm_rf(m, &format!("{p}/{name}"), depth + 1)?;
    }
    m.rmdir(p)?;
    Ok(n + 1)
}
