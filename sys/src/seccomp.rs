//! The seccomp filter every container process gets (classic BPF, installed by prctl).

use nix::errno::Errno;

/// Refuse the keyring syscalls (add_key, request_key, keyctl) with EPERM, as docker's
/// default seccomp profile does: keyrings belong to the user namespace, so a rootful
/// container's root would otherwise read and change the host root's user keyring. Needs
/// no_new_privs (or CAP_SYS_ADMIN). No filter on architectures other than x86_64 and aarch64.
pub fn deny_keyring_syscalls() -> nix::Result<()> {
    // (audit arch, syscall-number bits to clear, add_key, request_key, keyctl).
    #[cfg(target_arch = "x86_64")]
    let abis: &[(u32, u32, [u32; 3])] = &[
        // x86_64, and x32 (the same numbers with bit 30 set).
        (0xC000_003E, 0x4000_0000, [248, 249, 250]),
        (0x4000_0003, 0, [286, 287, 288]),
    ];
    #[cfg(target_arch = "aarch64")]
    let abis: &[(u32, u32, [u32; 3])] = &[(0xC000_00B7, 0, [217, 218, 219])];
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let abis: &[(u32, u32, [u32; 3])] = &[];
    if abis.is_empty() {
        return Ok(());
    }
    let op = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = |offset: u32| op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset);
    let allow = op(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW);
    let deny = op(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
    );
    // struct seccomp_data: nr at offset 0, arch at 4. For each ABI: if the arch matches,
    // test the number and return; else skip the block (the accumulator still holds arch).
    let mut prog = vec![load(4)];
    for (arch, clear, nrs) in abis {
        let mut block = vec![load(0)];
        if *clear != 0 {
            block.push(op(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, !clear));
        }
        for nr in nrs {
            block.push(jeq(*nr, 0, 1));
            block.push(deny);
        }
        block.push(allow);
        prog.push(jeq(*arch, 0, block.len() as u8));
        prog.extend(block);
    }
    prog.push(allow);
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: fprog points at prog, a valid classic BPF program of fprog.len instructions
    // that outlives the call (the kernel copies it).
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    Errno::result(r).map(drop)
}
