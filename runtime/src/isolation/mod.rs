//! What sets a container apart from the host: its root filesystem view, capabilities,
//! seccomp filter, cgroup limits, and the user namespace of rootless operation.

pub mod caps;
pub mod cgroups;
pub mod devices;
pub mod rootfs;
pub mod rootless;
pub mod seccomp;
pub mod seccomp_profile;
pub mod security;
