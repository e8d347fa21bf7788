//! The random operations of a round, each mirrored on the model.

use super::*;

impl Round {
    pub(super) fn op_read(&mut self) {
        let off = self.offset();
        let len = self.length();
        let direct = self.rng.chance(40);
        self.note(format!("pread off={off} len={len} direct={direct}"));
        self.check_range(off, len, direct, "pread");
    }

    pub(super) fn op_write(&mut self) {
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

    pub(super) fn op_truncate(&mut self) {
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

    pub(super) fn op_fallocate(&mut self) {
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

    pub(super) fn op_mmap(&mut self) {
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

    pub(super) fn op_fsync(&mut self) {
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
    pub(super) fn op_copy_out(&mut self) {
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
    pub(super) fn op_copy_in(&mut self) {
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

    pub(super) fn op_rename(&mut self) {
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

    pub(super) fn op_link(&mut self) {
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

    pub(super) fn op_chmod_utimes(&mut self) {
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
    pub(super) fn op_seek(&mut self) {
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

    pub(super) fn op_reopen(&mut self) {
        self.note("close + reopen".into());
        self.close();
        self.open();
        let off = self.offset();
        self.verify(off, 8192, "after reopen");
    }

    /// Read through another name of the file (a separate open).
    pub(super) fn op_read_other_name(&mut self) {
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
}
