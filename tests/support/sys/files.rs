//! Syscall wrappers for file handles, inode flags, FIEMAP, poll and getdents (part of the
//! harness's `sys` module, where all its `unsafe` lives).

use super::{cpath, cvt, cvt_size, open, R};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// AT_HANDLE_FID: a handle meant only for comparing inodes (fanotify), never opened.
pub const AT_HANDLE_FID: i32 = 0x200;

/// `name_to_handle_at(AT_FDCWD, p, .., flags)`: (handle type, handle bytes).
pub fn name_to_handle_at(p: &Path, flags: i32) -> R<(i32, Vec<u8>)> {
    #[repr(C)]
    struct Fh {
        bytes: u32,
        kind: i32,
        data: [u8; 128],
    }
    let c = cpath(p);
    let mut fh = Fh {
        bytes: 128,
        kind: 0,
        data: [0; 128],
    };
    let mut mnt_id: libc::c_int = 0;
    cvt(unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c.as_ptr(),
            &mut fh as *mut Fh,
            &mut mnt_id as *mut libc::c_int,
            flags,
        ) as libc::c_int
    })?;
    let n = (fh.bytes as usize).min(128);
    Ok((fh.kind, fh.data[..n].to_vec()))
}

/// `open_by_handle_at(mount_fd, handle, flags)`.
pub fn open_by_handle_at(mount_fd: &OwnedFd, handle: &(i32, Vec<u8>), flags: i32) -> R<OwnedFd> {
    let mut buf = vec![0u8; 8 + handle.1.len()];
    buf[..4].copy_from_slice(&(handle.1.len() as u32).to_ne_bytes());
    buf[4..8].copy_from_slice(&handle.0.to_ne_bytes());
    buf[8..].copy_from_slice(&handle.1);
    let fd = cvt(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            buf.as_mut_ptr(),
            flags | libc::O_CLOEXEC,
        ) as libc::c_int
    })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Drop the kernel's dentry and inode caches (`echo 2 > /proc/sys/vm/drop_caches`).
pub fn drop_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", "2").expect("write /proc/sys/vm/drop_caches");
}

/// One getdents64 call on an open directory: the number of bytes it returned.
pub fn getdents(fd: &OwnedFd) -> R<usize> {
    let mut buf = vec![0u8; 8192];
    let r = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    cvt_size(r as isize)
}

pub const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
pub const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
pub const FS_IOC_FIEMAP: libc::c_ulong = 0xc020_660b;
pub const FS_APPEND_FL: u32 = 0x20;
pub const FS_IMMUTABLE_FL: u32 = 0x10;
pub const FS_NOATIME_FL: u32 = 0x80;

/// The inode flags of `p` (lsattr).
pub fn get_flags(p: &Path) -> R<u32> {
    let fd = open(p, libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
    let mut v: libc::c_int = 0;
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_GETFLAGS as _, &mut v) })?;
    Ok(v as u32)
}

/// Set the inode flags of `p` (chattr).
pub fn set_flags(p: &Path, flags: u32) -> R<()> {
    let fd = open(p, libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
    let v = flags as libc::c_int;
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_SETFLAGS as _, &v) }).map(drop)
}

/// FS_IOC_FIEMAP on `fd` for the whole file: the number of mapped extents.
pub fn fiemap_extents(fd: &OwnedFd) -> R<u32> {
    // struct fiemap (32 bytes) followed by room for 32 struct fiemap_extent (56 bytes).
    let mut buf = vec![0u64; (32 + 32 * 56) / 8];
    buf[1] = u64::MAX; // fm_length
    let words: &mut [u32] = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), 8) };
    words[6] = 32; // fm_extent_count
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FIEMAP as _, buf.as_mut_ptr()) })?;
    let words: &[u32] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), 8) };
    Ok(words[5]) // fm_mapped_extents
}

/// poll(2) with timeout 0 on one fd: the returned events.
pub fn poll_now(fd: &OwnedFd, events: i16) -> R<i16> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    cvt(unsafe { libc::poll(&mut p, 1, 0) })?;
    Ok(p.revents)
}
