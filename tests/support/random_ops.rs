//! What the random-operation tests (diff_random, stack_random) share: paths drawn from a
//! small namespace, and an operation's outcome with whether st_ino stayed where it must.

use crate::mount::Mounted;
use crate::Rng;

/// A path of one to three components from `names` (half of them one deep), so that
/// operations collide with each other and with lower entries.
pub fn gen_path(r: &mut Rng, names: &[&str]) -> String {
    let depth = match r.below(100) {
        0..=49 => 1,
        50..=84 => 2,
        _ => 3,
    };
    (0..depth)
        .map(|_| *r.pick(names))
        .collect::<Vec<_>>()
        .join("/")
}

/// Which inode numbers an operation must keep.
pub enum InoCheck<'a> {
    /// Changed in place (or copied up): the path keeps its inode number.
    Kept(&'a str),
    /// rename(a, b) with these flags (2: RENAME_EXCHANGE): the numbers move with the names,
    /// or stay put when it fails.
    Rename(&'a str, &'a str, u32),
    /// link(a, b): both names show a's inode number.
    Link(&'a str, &'a str),
    /// Nothing to check.
    None,
}

/// Run `op` (its outcome as comparable text) on `m`, adding whether the inode numbers
/// stayed where `check` says they must.
pub fn run_checked(m: &Mounted, check: InoCheck<'_>, op: impl FnOnce() -> String) -> String {
    let ino = |p: &str| m.ino(p).ok();
    match check {
        InoCheck::Kept(p) => {
            let before = ino(p);
            let out = op();
            format!("{out} ino_kept={}", before == ino(p))
        }
        InoCheck::Rename(a, b, flags) => {
            let (ia, ib) = (ino(a), ino(b));
            let out = op();
            let kept = if out.starts_with("Ok") {
                if flags == 2 {
                    ino(a) == ib && ino(b) == ia
                } else {
                    ino(b) == ia
                }
            } else {
                ino(a) == ia && ino(b) == ib
            };
            format!("{out} ino_kept={kept}")
        }
        InoCheck::Link(a, b) => {
            let ia = ino(a);
            let out = op();
            let same = out.starts_with("Ok") && ino(b) == ia && ino(a) == ia;
            format!("{out} same_ino={same}")
        }
        InoCheck::None => op(),
    }
}
