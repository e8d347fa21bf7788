//! strata as a containerd snapshotter: containerd's snapshots gRPC API (a proxy plugin,
//! `[proxy_plugins.strata] type = "snapshot"`) served on a unix socket, with the semantics
//! of containerd's overlayfs snapshotter.
//!
//! Layout under ROOT: `snapshots/ID/{fs,work}` per snapshot and `metadata.json` (see db.rs).
//! Mounts are what containerd's overlay snapshotter returns, which is what strata's `auto`
//! driver picks for plain layers on a kernel with overlayfs: a bind mount for a snapshot
//! without parents, a read-only bind of the parent for a view of one layer, and a kernel
//! overlay (`lowerdir=` the parents nearest first, `upperdir=fs`, `workdir=work`) otherwise.
//! containerd performs the mounts itself.

mod db;
mod ops;
mod usage;

use containerd_snapshots::tonic;
pub use ops::Strata;
use std::path::Path;

/// What a snapshot operation can fail with, one variant per gRPC code containerd reads.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No snapshot has this key.
    #[error("snapshot {0} not found")]
    NotFound(String),
    /// The key (or commit name) is taken.
    #[error("snapshot {0} already exists")]
    AlreadyExists(String),
    /// The snapshot is in the wrong state (a parent not committed, children left, ...).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A malformed request (an unknown label path, an empty key, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The disk or the metadata file failed.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn io(path: &Path, e: std::io::Error) -> Self {
        Error::Internal(format!("{}: {e}", path.display()))
    }
}

// containerd turns these codes back into its errdefs (ErrNotFound, ErrAlreadyExists, ...):
// image unpack relies on AlreadyExists and NotFound being told apart.
impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let msg = e.to_string();
        match e {
            Error::NotFound(_) => tonic::Status::not_found(msg),
            Error::AlreadyExists(_) => tonic::Status::already_exists(msg),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            Error::Internal(_) => tonic::Status::internal(msg),
        }
    }
}

/// Serve the snapshots API on the unix socket `address` until SIGINT or SIGTERM.
/// A stale socket file at `address` is replaced (a live one refused); the socket is
/// removed on a clean stop.
pub fn serve(address: &Path, root: &Path) -> Result<(), Error> {
    let snap = Strata::open(root)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("tokio runtime: {e}")))?;
    rt.block_on(run(address, snap))
}

async fn run(address: &Path, snap: Strata) -> Result<(), Error> {
    if let Some(dir) = address.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    // A socket someone still answers on is not stale: refuse it rather than take it over.
    if std::os::unix::net::UnixStream::connect(address).is_ok() {
        return Err(Error::Internal(format!(
            "{}: another server is listening there",
            address.display()
        )));
    }
    match std::fs::remove_file(address) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(address, e)),
    }
    let listener = tokio::net::UnixListener::bind(address).map_err(|e| Error::io(address, e))?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Internal(format!("SIGTERM handler: {e}")))?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    tracing::info!(address = %address.display(), "snapshotter serving");
    let served = tonic::transport::Server::builder()
        .add_service(containerd_snapshots::server(std::sync::Arc::new(snap)))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| Error::Internal(format!("serve: {e}")));
    // Ours (bound above): gone with the server.
    let _ = std::fs::remove_file(address);
    served
}
