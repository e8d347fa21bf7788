//! The checks of a round: the whole file through every name, the upper and its block map, remounts.

use super::*;

impl Round {
    /// Unmount, fsck, mount again; whole-file comparison through every name; block map,
    /// lower limit and allocation checks.
    pub(super) fn remount(&mut self) {
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

    pub(super) fn check_whole(&mut self, what: &str) {
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

    pub(super) fn check_upper(&mut self, what: &str) {
        let name = self.names[0].clone();
        let meta = self.m.meta(&name).unwrap_or_default();
        let Some(delta) = meta_line(&meta, "delta") else {
            // A delta whose blocks below the lower limit were all written has nothing left
            // below: it becomes whole whatever the ratio (and the block map claims only
            // blocks the model touched, so this holds whenever strata may do so).
            let below = self.size().min(self.limit).div_ceil(self.cfg.block);
            let covered = (0..below).all(|b| self.touched.contains(&b));
            if self.cfg.stays_delta && self.limit > 0 && !covered {
                fail(self, &format!("{what}: the file is no longer a delta (compact_ratio=1.0, block list short, blocks below not all written): meta {meta:?}"));
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
    pub(super) fn small_write_check(&mut self) {
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
}
