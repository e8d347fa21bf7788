//! Capabilities: docker's default set, applied to the bounding, effective and permitted sets.

use crate::util::{Ctx, Result};
use strata_sys as sys;

/// docker's default capabilities (numbers from linux/capability.h).
pub const DEFAULT: [u32; 14] = [
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    8,  // SETPCAP
    10, // NET_BIND_SERVICE
    13, // NET_RAW
    18, // SYS_CHROOT
    27, // MKNOD
    29, // AUDIT_WRITE
    31, // SETFCAP
];

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

const MKNOD: u32 = 27;

/// Drop every capability outside [`DEFAULT`] from the bounding set, clear the ambient set and
/// set effective = permitted = DEFAULT, inheritable empty. Without `mknod` CAP_MKNOD goes
/// too: docker keeps it because its device cgroup refuses to open what was made, and where
/// no such cgroup applies (cgroup v2) a node of the host's disk would read the disk.
pub fn restrict_to_default(mknod: bool) -> Result<()> {
    let keep = |cap: u32| DEFAULT.contains(&cap) && (mknod || cap != MKNOD);
    let last = last_cap();
    for cap in 0..=last {
        if !keep(cap) {
            sys::capbset_drop(cap)
                .ctx(|| format!("cannot drop capability {cap} from the bounding set"))?;
        }
    }
    // Ambient capabilities may be unsupported on old kernels: nothing to clear then.
    let _ = sys::clear_ambient_caps();
    let mask = DEFAULT
        .iter()
        .filter(|c| keep(**c))
        .fold(0u64, |m, c| m | (1u64 << c));
    sys::capset(mask, mask, 0).ctx(|| "cannot set capabilities")
}
