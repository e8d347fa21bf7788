//! uid/gid translation between the mount and the branches (fuse-overlayfs uidmapping=).

/// One contiguous range: ids `inside..inside+len` in the mount are `outside..` on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    inside: u32,
    outside: u32,
    len: u32,
}

/// A set of ranges; empty means identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    ranges: Vec<Range>,
}

impl IdMap {
    /// Parse `IN:OUT:LEN[:IN:OUT:LEN...]` (fuse-overlayfs accepts `:` between triples too).
    pub fn parse(s: &str) -> Result<IdMap, String> {
        let nums: Result<Vec<u32>, _> = s
            .split([':', '/'])
            .filter(|p| !p.is_empty())
            .map(str::parse::<u32>)
            .collect();
        let nums = nums.map_err(|_| format!("id mapping '{s}': expected numbers IN:OUT:LEN"))?;
        if nums.is_empty() || nums.len() % 3 != 0 {
            return Err(format!(
                "id mapping '{s}': expected triples IN:OUT:LEN[:IN:OUT:LEN...]"
            ));
        }
        let ranges = nums
            .chunks(3)
            .map(|c| Range {
                inside: c[0],
                outside: c[1],
                len: c[2],
            })
            .collect();
        Ok(IdMap { ranges })
    }

    /// Whether this map is the identity.
    pub fn is_identity(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Disk id to mount id; unmapped ids show as the overflow id 65534, like the kernel.
    pub fn to_inside(&self, outside: u32) -> u32 {
        if self.ranges.is_empty() {
            return outside;
        }
        self.ranges
            .iter()
            .find_map(|r| {
                let off = outside.checked_sub(r.outside).filter(|o| *o < r.len)?;
                r.inside.checked_add(off)
            })
            .unwrap_or(65534)
    }

    /// Mount id to disk id; None when the id has no mapping (the caller answers EINVAL).
    pub fn to_outside(&self, inside: u32) -> Option<u32> {
        if self.ranges.is_empty() {
            return Some(inside);
        }
        self.ranges.iter().find_map(|r| {
            let off = inside.checked_sub(r.inside).filter(|o| *o < r.len)?;
            r.outside.checked_add(off)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_both_ways() {
        let m = IdMap::parse("0:1000:1:1:100000:65536").unwrap();
        assert_eq!(m.to_inside(1000), 0);
        assert_eq!(m.to_inside(100004), 5);
        assert_eq!(m.to_inside(7), 65534);
        assert_eq!(m.to_outside(0), Some(1000));
        assert_eq!(m.to_outside(70000), None);
        assert!(IdMap::parse("1:2").is_err());
        // Ranges running past u32::MAX map what fits and nothing beyond.
        let m = IdMap::parse("4294967000:0:1000").unwrap();
        assert_eq!(m.to_inside(10), 4294967010);
        assert_eq!(m.to_inside(400), 65534);
        assert_eq!(m.to_outside(4294967295), Some(295));
    }
}
