//! The hook behind lazily pulled lower branches. The union knows nothing of registries: the
//! program that mounts (the `strata` binary) installs a provider that, given a lowerdir,
//! may hand back a [`LowerFill`]; [`super::branch::Branch::open_at`] then calls it before any
//! open that can read a file's data, so the file is complete and verified when opened.

use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Fetches the data of a lazily pulled branch's files.
pub trait LowerFill: Send + Sync {
    /// Make `rel` (a path inside the branch) hold its real, verified data; EIO (or another
    /// errno) when it cannot, and the open fails.
    fn ensure(&self, rel: &Path) -> io::Result<()>;
}

/// A branch's filler.
#[derive(Clone)]
pub struct Fill(pub Arc<dyn LowerFill>);

impl std::fmt::Debug for Fill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fill")
    }
}

/// Given a lowerdir, its filler if it is lazily pulled.
pub type Provider = Box<dyn Fn(&Path) -> Option<Arc<dyn LowerFill>> + Send + Sync>;

static PROVIDER: OnceLock<Provider> = OnceLock::new();

/// Install the provider (once per process, before the branches are opened).
pub fn set_provider(p: Provider) {
    let _ = PROVIDER.set(p);
}

/// The filler for lowerdir `path`, if the provider knows one.
pub fn fill_for(path: &Path) -> Option<Fill> {
    PROVIDER.get().and_then(|p| p(path)).map(Fill)
}
