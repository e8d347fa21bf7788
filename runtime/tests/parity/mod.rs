//! The store and busybox image shared by the docker-parity tests (run_flags, pid1, volumes,
//! log_streams): a private store with `busybox` imported, its /data holding a file, as an
//! image VOLUME would.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use crate::common::poll;
use crate::common::store_env::StoreEnv;

/// A private store with a busybox image imported as `busybox` (and `withvol`, the same
/// with `VOLUME /data`).
pub struct Env(StoreEnv);

impl Env {
    pub fn new(tag: &str) -> Env {
        let env = StoreEnv::bare(tag);
        env.write_rootfs("etc/group", "root:x:0:\nwheel:x:10:\n");
        env.write_rootfs("data/seed", "from the image\n");
        env.write_rootfs("data/sub/deep", "deep\n");
        env.import_rootfs("busybox", &[r#"CMD ["/bin/sh"]"#]);
        env.import_rootfs("withvol", &[r#"CMD ["/bin/sh"]"#, "VOLUME /data"]);
        Env(env)
    }
}

impl std::ops::Deref for Env {
    type Target = StoreEnv;
    fn deref(&self) -> &StoreEnv {
        &self.0
    }
}
