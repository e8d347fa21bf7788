//! The generic VFS mount flags strata takes as options (`nosuid`, `noatime`, ...): their
//! MS_* bits, and the flags a mount has now, read back from /proc/self/mountinfo.

use nix::mount::MsFlags;

/// The bits option `word` sets and clears, or None when it is not a VFS flag. Applied in
/// order, a later word wins over an earlier one (as mount(8) does).
pub fn flag_word(word: &str) -> Option<(MsFlags, MsFlags)> {
    let none = MsFlags::empty();
    let atime = MsFlags::MS_NOATIME | MsFlags::MS_RELATIME | MsFlags::MS_STRICTATIME;
    Some(match word {
        "ro" => (MsFlags::MS_RDONLY, none),
        "rw" => (none, MsFlags::MS_RDONLY),
        "nodev" => (MsFlags::MS_NODEV, none),
        "dev" => (none, MsFlags::MS_NODEV),
        "nosuid" => (MsFlags::MS_NOSUID, none),
        "suid" => (none, MsFlags::MS_NOSUID),
        "noexec" => (MsFlags::MS_NOEXEC, none),
        "exec" => (none, MsFlags::MS_NOEXEC),
        "noatime" => (MsFlags::MS_NOATIME, atime),
        // `atime` only undoes noatime (mount(8)); relatime stays the default then.
        "atime" => (none, MsFlags::MS_NOATIME),
        "relatime" => (MsFlags::MS_RELATIME, atime),
        "norelatime" | "strictatime" => (MsFlags::MS_STRICTATIME, atime),
        "nostrictatime" => (MsFlags::MS_RELATIME, atime),
        "nodiratime" => (MsFlags::MS_NODIRATIME, none),
        "diratime" => (none, MsFlags::MS_NODIRATIME),
        "lazytime" => (MsFlags::MS_LAZYTIME, none),
        "nolazytime" => (none, MsFlags::MS_LAZYTIME),
        "sync" => (MsFlags::MS_SYNCHRONOUS, none),
        "async" => (none, MsFlags::MS_SYNCHRONOUS),
        "dirsync" => (MsFlags::MS_DIRSYNC, none),
        "silent" => (MsFlags::MS_SILENT, none),
        "loud" => (none, MsFlags::MS_SILENT),
        _ => return None,
    })
}

/// `flags` with `word` applied; false when `word` is not a VFS flag.
pub fn apply(flags: &mut MsFlags, word: &str) -> bool {
    match flag_word(word) {
        Some((set, clear)) => {
            *flags = (*flags - clear) | set;
            true
        }
        None => false,
    }
}

/// The VFS flags of the mount with id `mount_id` (the top one at a mountpoint: see
/// `fuse::mount::top_mount`), from its mountinfo line:
/// per-mount flags and the superblock's (`ro`, `sync`, `lazytime` ...). Strictatime shows
/// as the absence of `noatime` and `relatime`, and is returned as MS_STRICTATIME.
pub fn current(mount_id: u64) -> Option<MsFlags> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let line = info
        .lines()
        .find(|l| l.split(' ').next() == Some(mount_id.to_string().as_str()))?;
    Some(parse_line_flags(line))
}

fn parse_line_flags(line: &str) -> MsFlags {
    let f: Vec<&str> = line.split(' ').collect();
    let per_mount = f.get(5).copied().unwrap_or("");
    let sup = f
        .iter()
        .position(|x| *x == "-")
        .and_then(|d| f.get(d + 3))
        .copied()
        .unwrap_or("");
    let mut flags = MsFlags::empty();
    for w in per_mount.split(',').chain(sup.split(',')) {
        // Only set bits: the per-mount `rw` must not undo the superblock's `ro`.
        if let Some((set, _)) = flag_word(w) {
            flags |= set;
        }
    }
    if !flags.intersects(MsFlags::MS_NOATIME | MsFlags::MS_RELATIME) {
        flags |= MsFlags::MS_STRICTATIME;
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_flags() {
        let l = "36 35 0:52 / /m rw,nosuid,noatime shared:1 - fuse.strata s ro,user_id=0";
        let f = parse_line_flags(l);
        assert!(f.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOATIME));
        assert!(!f.contains(MsFlags::MS_STRICTATIME));
        let l = "36 35 0:52 / /m rw,nodev - fuse.strata s rw,lazytime,user_id=0";
        let f = parse_line_flags(l);
        assert!(f.contains(MsFlags::MS_STRICTATIME | MsFlags::MS_LAZYTIME));
        assert!(!f.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn later_word_wins() {
        let mut f = MsFlags::MS_RELATIME;
        for w in ["noatime", "strictatime", "nodiratime", "ro", "rw"] {
            assert!(apply(&mut f, w));
        }
        assert_eq!(f, MsFlags::MS_STRICTATIME | MsFlags::MS_NODIRATIME);
        assert!(!apply(&mut f, "lowerdir=/x"));
    }
}
