//! Installing a seccomp program already compiled to classic BPF (the runtime caches what
//! libseccomp compiles, so a start does not generate the same program again).

use std::io;

/// `SECCOMP_SET_MODE_FILTER` of seccomp(2).
const SET_MODE_FILTER: libc::c_ulong = 1;

/// Install `prog` (an array of `struct sock_filter`, native byte order) as the calling
/// thread's seccomp filter with no flags, as libseccomp's default load does. Needs
/// no_new_privs or CAP_SYS_ADMIN; the kernel validates the program.
pub fn set_filter(prog: &[u8]) -> io::Result<()> {
    if prog.is_empty() || !prog.len().is_multiple_of(8) || prog.len() / 8 > u16::MAX as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let filters: Vec<libc::sock_filter> = prog
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: filters.len() as libc::c_ushort,
        filter: filters.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `filters`, which outlives the call; the kernel copies the
    // program and reads nothing else.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SET_MODE_FILTER,
            0 as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
