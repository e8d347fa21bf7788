//! File attributes as the union reports them, independent of FUSE.

use nix::sys::stat::FileStat;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The attributes of one merged inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Reported st_ino (also the FUSE node id).
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Last access.
    pub atime: SystemTime,
    /// Last modification.
    pub mtime: SystemTime,
    /// Last status change.
    pub ctime: SystemTime,
    /// File type and permission bits (st_mode).
    pub mode: u32,
    /// Link count.
    pub nlink: u32,
    /// Owner as seen in the mount.
    pub uid: u32,
    /// Group as seen in the mount.
    pub gid: u32,
    /// Device number for device nodes.
    pub rdev: u32,
    /// Preferred I/O size.
    pub blksize: u32,
    /// FUSE generation of the inode (set by operations that hand out a new reference).
    pub generation: u64,
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    let nsec = nsec.clamp(0, 999_999_999) as u32;
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::new(sec.unsigned_abs(), 0))
            .and_then(|t| t.checked_add(Duration::new(0, nsec)))
            .unwrap_or(UNIX_EPOCH)
    }
}

impl Attr {
    /// Build from a branch stat; the caller fixes up ino and ownership.
    pub fn from_stat(st: &FileStat, ino: u64) -> Attr {
        Attr {
            ino,
            size: st.st_size.max(0) as u64,
            blocks: st.st_blocks.max(0) as u64,
            atime: time(st.st_atime, st.st_atime_nsec),
            mtime: time(st.st_mtime, st.st_mtime_nsec),
            ctime: time(st.st_ctime, st.st_ctime_nsec),
            mode: st.st_mode,
            nlink: st.st_nlink.min(u64::from(u32::MAX)) as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: st.st_blksize.clamp(512, 1 << 20) as u32,
            generation: 0,
        }
    }

    /// The S_IFMT bits.
    pub fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
}

/// S_IFMT bits of a stat.
pub fn fmt(st: &FileStat) -> u32 {
    st.st_mode & libc::S_IFMT
}

/// Whether a stat is a directory.
pub fn is_dir(st: &FileStat) -> bool {
    fmt(st) == libc::S_IFDIR
}
