//! uid/gid translation between the branches and the mount, read as fuse-overlayfs reads
//! `uidmapping=` / `gidmapping=`.
//!
//! A triple `HOST:TO:LEN` says: ids `HOST..HOST+LEN` on disk show as `TO..TO+LEN` in the
//! mount, and an id given in the mount (a chown, the owner of a new file) in
//! `TO..TO+LEN` is written as `HOST..` on disk. An id outside every range becomes the
//! overflow id (/proc/sys/kernel/overflowuid, 65534) in both directions, as
//! fuse-overlayfs does: a chown to an unmapped id succeeds and writes the overflow id.

/// One contiguous range: ids `host..host+len` on disk are `to..to+len` in the mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    host: u32,
    to: u32,
    len: u32,
}

impl Range {
    /// `id - base` when `id` lies in `base..base+len`.
    fn offset(&self, base: u32, id: u32) -> Option<u32> {
        id.checked_sub(base).filter(|o| *o < self.len)
    }
}

/// The overflow id the kernel shows for ids it cannot map.
pub const OVERFLOW_ID: u32 = 65534;

/// A set of ranges; empty means identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    /// Searched first to last; the last triple of the option comes first, because
    /// fuse-overlayfs prepends each triple to its list (it wins where ranges overlap).
    ranges: Vec<Range>,
    overflow: u32,
}

impl Default for IdMap {
    fn default() -> Self {
        IdMap {
            ranges: Vec::new(),
            overflow: OVERFLOW_ID,
        }
    }
}

impl IdMap {
    /// Parse `HOST:TO:LEN[:HOST:TO:LEN...]`; empty fields are skipped, so the leading
    /// colon containers/storage writes (`:0:1:1003:...`) is accepted, as fuse-overlayfs does.
    pub fn parse(s: &str) -> Result<IdMap, String> {
        let nums: Result<Vec<u32>, _> = s
            .split([':', '/'])
            .filter(|p| !p.is_empty())
            .map(str::parse::<u32>)
            .collect();
        let nums = nums.map_err(|_| format!("id mapping '{s}': expected numbers HOST:TO:LEN"))?;
        if nums.is_empty() || nums.len() % 3 != 0 {
            return Err(format!(
                "id mapping '{s}': expected triples HOST:TO:LEN[:HOST:TO:LEN...]"
            ));
        }
        let ranges = nums
            .chunks(3)
            .rev()
            .map(|c| Range {
                host: c[0],
                to: c[1],
                len: c[2],
            })
            .collect();
        Ok(IdMap {
            ranges,
            overflow: OVERFLOW_ID,
        })
    }

    /// The same map with another overflow id (the system's overflowuid / overflowgid).
    pub fn with_overflow(mut self, overflow: u32) -> IdMap {
        self.overflow = overflow;
        self
    }

    /// Whether this map is the identity.
    pub fn is_identity(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Disk id to mount id; unmapped ids show as the overflow id.
    pub fn to_inside(&self, disk: u32) -> u32 {
        if self.ranges.is_empty() {
            return disk;
        }
        self.ranges
            .iter()
            .find_map(|r| r.to.checked_add(r.offset(r.host, disk)?))
            .unwrap_or(self.overflow)
    }

    /// Mount id to disk id; unmapped ids are written as the overflow id.
    pub fn to_outside(&self, inside: u32) -> u32 {
        if self.ranges.is_empty() {
            return inside;
        }
        self.ranges
            .iter()
            .find_map(|r| r.host.checked_add(r.offset(r.to, inside)?))
            .unwrap_or(self.overflow)
    }
}

/// The system's overflow id from /proc/sys/kernel/overflow{uid,gid} (65534 if unreadable).
pub fn system_overflow(which: &str) -> u32 {
    std::fs::read_to_string(format!("/proc/sys/kernel/overflow{which}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(OVERFLOW_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_as_fuse_overlayfs() {
        // Disk 0 shows as 1000, disk 100000.. as 1..; the mount's 1000 is disk 0.
        let m = IdMap::parse("0:1000:1:100000:1:500").unwrap();
        assert_eq!(m.to_inside(0), 1000);
        assert_eq!(m.to_inside(100004), 5);
        assert_eq!(m.to_inside(7), 65534);
        assert_eq!(m.to_outside(1000), 0);
        assert_eq!(m.to_outside(5), 100004);
        assert_eq!(m.to_outside(70000), 65534);
        assert!(IdMap::parse("1:2").is_err());
        // containers/storage's --userns=keep-id form, with its leading colon.
        let k = IdMap::parse(":0:1:1003:1003:0:1:1004:1004:64533").unwrap();
        assert_eq!(k.to_inside(0), 1);
        assert_eq!(k.to_inside(1003), 0);
        assert_eq!(k.to_inside(1004), 1004);
        assert_eq!(k.to_outside(0), 1003);
        assert_eq!(k.to_outside(1), 0);
        // Ranges running past u32::MAX map what fits and nothing beyond.
        let m = IdMap::parse("4294967000:0:1000").unwrap();
        assert_eq!(m.to_inside(4294967010), 10);
        assert_eq!(m.to_inside(400), 65534);
        assert_eq!(m.to_outside(295), 4294967295);
        assert_eq!(m.to_outside(296), 65534);
        assert_eq!(m.with_overflow(99).to_inside(1), 99);
    }
}
