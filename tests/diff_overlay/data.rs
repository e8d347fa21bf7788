//! Copy-up, metadata, xattrs and file data operations against overlayfs.

use super::*;

#[test]
fn copy_up_on_write() {
    let p = pair();
    ino_kept(&p, "ino across data copy-up", "f1", "f1", |m| {
        m.write_at("f1", 2, "XY").unwrap();
    });
    p.both("read after write", |m| m.read("f1"));
    p.both("stat after write", |m| m.stat("f1"));
    p.both("lower branch untouched", |m| {
        std::fs::read(m.lowers[1].join("f1")).map_err(|e| e.to_string())
    });
    p.both("append", |m| m.append("exec", "echo hi\n"));
    p.both("read appended", |m| (m.read("exec"), m.stat("exec")));
    p.both("truncate down", |m| m.truncate("big", 1000));
    p.both("truncate up", |m| m.truncate("shadow", 100_000));
    p.both("read truncated", |m| {
        (m.read("big"), m.read("shadow"), m.stat("big"))
    });
    p.both("O_TRUNC rewrite", |m| m.put("d/a", "rewritten\n"));
    p.both("read rewritten", |m| m.read("d/a"));
    p.both("write into big lower file", |m| {
        m.write_at("big", 500, vec![b'q'; 10])
    });
    p.both("pread", |m| m.pread("big", 20, 495));
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
}

#[test]
fn metadata_changes_on_lower_files() {
    let p = pair();
    ino_kept(&p, "ino across chmod copy-up", "f1", "f1", |m| {
        m.chmod("f1", 0o600).unwrap();
    });
    p.both("chown", |m| m.chown("f2", 1000, 2000));
    p.both("chown dir", |m| m.chown("d", 1001, 1001));
    p.both("chmod dir", |m| m.chmod("d/sub", 0o700));
    p.both("lchown symlink", |m| m.chown("sym", 1002, 1002));
    p.both("chmod own (setuid stays off)", |m| m.chmod("own", 0o4755));
    p.both("utimes", |m| {
        m.set_times("exec", (1_500_000_000, 0), (1_600_000_000, 123))
    });
    p.both("utimes dir", |m| m.set_times("m", (1, 0), (2, 0)));
    p.both("utimes symlink", |m| m.set_times("sym", (3, 0), (4, 0)));
    p.both("metadata", |m| {
        ["f1", "f2", "d", "d/sub", "sym", "own", "exec", "m"]
            .map(|f| m.stat(f))
            .to_vec()
    });
    p.both("explicit mtimes", |m| {
        (
            m.mtime("exec"),
            m.mtime("m"),
            m.mtime("sym"),
            m.mtime("dated"),
        )
    });
    p.both("content unchanged", |m| {
        (m.read("f1"), m.read("f2"), m.read("exec"))
    });
    p.both("listing of chowned dir still merged", |m| m.readdir("d"));
    p.both("lchmod on symlink", |m| m.lchmod("sym", 0o600));
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
    p.both("mtimes after remount", |m| (m.mtime("exec"), m.mtime("m")));
}

#[test]
fn xattrs_on_lower_files_and_dirs() {
    let p = pair();
    p.both("list lower", |m| {
        (m.xattrs("xf"), m.xattrs("d"), m.xattrs("f1"))
    });
    p.both("get lower", |m| m.getxattr("xf", "user.k"));
    p.both("get missing", |m| m.getxattr("xf", "user.nope"));
    p.both("set on lower file", |m| m.setxattr("f1", "user.new", b"1"));
    p.both("set on lower dir", |m| {
        m.setxattr("d/sub", "user.new", b"2")
    });
    p.both("set on merged dir", |m| m.setxattr("m", "user.new", b"3"));
    p.both("XATTR_CREATE existing", |m| {
        m.setxattr_flags("xf", "user.k", b"z", 1)
    });
    p.both("XATTR_REPLACE missing", |m| {
        m.setxattr_flags("xf", "user.none", b"z", 2)
    });
    p.both("XATTR_REPLACE existing", |m| {
        m.setxattr_flags("xf", "user.k", b"w", 2)
    });
    p.both("remove lower xattr", |m| m.removexattr("d", "user.dk"));
    p.both("remove missing", |m| m.removexattr("d", "user.dk"));
    p.both("values", |m| {
        ["xf", "f1", "d", "d/sub", "m"]
            .map(|f| m.xattr_values(f))
            .to_vec()
    });
    p.both("content unchanged", |m| (m.read("xf"), m.read("f1")));
    p.both("xattr on missing file", |m| {
        m.setxattr("nope", "user.a", b"1")
    });
    p.both("empty value", |m| m.setxattr("f2", "user.empty", b""));
    p.both("get empty", |m| m.getxattr("f2", "user.empty"));
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
}

#[test]
fn symlinks_fifos_devices() {
    let p = pair();
    p.both("symlink", |m| m.symlink("../f2", "d/up"));
    p.both("readlink", |m| {
        (m.readlink("d/up"), m.read("d/up"), m.stat("d/up"))
    });
    p.both("dangling symlink", |m| {
        (m.symlink("nowhere", "dang"), m.read("dang"))
    });
    p.both("readlink lower", |m| {
        (m.readlink("sym"), m.readlink("dsym"), m.readdir("dsym"))
    });
    p.both("mkfifo", |m| {
        (m.mkfifo("m/fifo2", 0o640), m.stat("m/fifo2"))
    });
    p.both("lower fifo", |m| m.stat("fifo"));
    p.both("mknod char 1/3", |m| {
        (m.mknod_char("null", 0o666, 1, 3), m.stat("null"))
    });
    p.both("listing", |m| {
        (m.readdir(""), m.readdir("m"), m.readdir("d"))
    });
    let mut p = p;
    p.remount();
    p.same_tree("after remount");
}

#[test]
fn fallocate_and_seek() {
    let p = pair();
    p.both("SEEK_DATA 0 on sparse lower", |m| {
        m.seek("sparse", 0, libc::SEEK_DATA)
    });
    p.both("SEEK_HOLE 0 on sparse lower", |m| {
        m.seek("sparse", 0, libc::SEEK_HOLE)
    });
    p.both("SEEK_DATA past first hole", |m| {
        m.seek("sparse", 1 << 20, libc::SEEK_DATA)
    });
    p.both("SEEK_DATA past end", |m| {
        m.seek("sparse", 8 << 20, libc::SEEK_DATA)
    });
    p.both("sparse content", |m| {
        (
            m.pread("sparse", 8, 0),
            m.pread("sparse", 8, 2 << 20),
            m.stat("sparse"),
        )
    });
    p.both("fallocate extend", |m| m.fallocate("f1", 0, 0, 1 << 16));
    p.both("after extend", |m| (m.stat("f1"), m.read("f1")));
    p.both("fallocate keep size", |m| {
        m.fallocate("f2", libc::FALLOC_FL_KEEP_SIZE, 0, 1 << 16)
    });
    p.both("after keep size", |m| (m.stat("f2"), m.read("f2")));
    p.both("punch hole", |m| {
        m.fallocate(
            "big",
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            4096,
            8192,
        )
    });
    p.both("after punch", |m| (m.stat("big"), m.read("big")));
    p.both("SEEK_HOLE after punch", |m| {
        m.seek("big", 0, libc::SEEK_HOLE)
    });
    p.both("SEEK_DATA in punched hole", |m| {
        m.seek("big", 4096, libc::SEEK_DATA)
    });
    p.both("fallocate on dir", |m| m.fallocate("d", 0, 0, 10));
}

#[test]
fn statfs_is_sane() {
    let p = pair();
    let info = p.both_val("statfs root", |m| m.statfs(""));
    let info = info.unwrap();
    assert_eq!(info.namemax, 255);
    assert!(info.bsize_positive && info.blocks_positive && info.free_le_blocks);
    p.both("statfs lower file", |m| m.statfs("d/a"));
}

#[test]
fn open_unlinked_file() {
    let p = pair();
    p.both("lower file", |m| m.open_unlink_fstat("f1"));
    p.both("new file", |m| {
        (m.put("new", "new"), m.open_unlink_fstat("new"))
    });
    p.both("copied-up file", |m| {
        (m.write_at("f2", 0, "F"), m.open_unlink_fstat("f2"))
    });
    p.both("names gone", |m| {
        (m.stat("f1"), m.stat("new"), m.stat("f2"))
    });
    p.both("hard link: other name keeps the inode", |m| {
        (m.open_unlink_fstat("hl1"), m.stat("hl2"))
    });
}

#[test]
fn copy_file_range_fsync_flock() {
    let p = pair();
    p.both("copy_file_range from lower", |m| {
        m.copy_range("big", "bigcopy")
    });
    p.both("copied", |m| {
        (
            m.read("bigcopy").map(|v| v.len()),
            m.read("bigcopy") == m.read("big"),
        )
    });
    p.both("copy_file_range onto lower file", |m| {
        m.copy_range("f2", "f1")
    });
    p.both("read", |m| m.read("f1"));
    p.both("fsync new file", |m| m.put_fsync("synced", b"synced"));
    p.both("flock on lower file", |m| m.flock_conflict("f2"));
    p.both("flock on new file", |m| m.flock_conflict("synced"));
}

#[test]
fn mmap_write_copies_up() {
    let p = pair();
    p.both("shared writable mmap of a lower file", |m| {
        let fd = strata_tests::sys::open(&m.p("big"), libc::O_RDWR, 0)?;
        let len = 300_000usize;
        // SAFETY: mapping a file we opened read-write; unmapped below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        // SAFETY: ptr maps `len` bytes.
        let bytes = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) };
        bytes[100..110].copy_from_slice(b"MMAPWRITE!");
        bytes[len - 1] = b'E';
        // SAFETY: same mapping.
        let r = unsafe { libc::msync(ptr, len, libc::MS_SYNC) };
        unsafe { libc::munmap(ptr, len) };
        if r != 0 {
            return Err(Errno::last());
        }
        Ok(())
    });
    p.both("read back", |m| {
        (
            m.pread("big", 20, 95),
            m.pread("big", 4, 299_998),
            m.stat("big"),
        )
    });
    let mut p = p;
    p.remount();
    p.both("after remount", |m| {
        (m.pread("big", 20, 95), m.pread("big", 4, 299_998))
    });
}
