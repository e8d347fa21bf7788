//! Disk usage of a snapshot's fs directory, as containerd's `fs.DiskUsage`: allocated
//! bytes (st_blocks * 512) and inodes, each hard-linked inode counted once.

use crate::Error;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub fn du(dir: &Path) -> Result<(i64, i64), Error> {
    let mut seen = HashSet::new();
    let mut size: i64 = 0;
    let mut inodes: i64 = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
        if seen.insert((md.dev(), md.ino())) {
            inodes += 1;
            size = size.saturating_add(i64::try_from(md.blocks() * 512).unwrap_or(i64::MAX));
        }
        if md.is_dir() {
            for entry in std::fs::read_dir(&p).map_err(|e| Error::io(&p, e))? {
                let entry = entry.map_err(|e| Error::io(&p, e))?;
                stack.push(entry.path());
            }
        }
    }
    Ok((size, inodes))
}
