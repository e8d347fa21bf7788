//! eStargz (containerd/stargz-snapshotter docs/estargz.md): a gzip layer whose regular files
//! (and chunks of big ones) are separate gzip members, with a table of contents
//! (`stargz.index.json`, the last tar entry) holding each chunk's offset and digest, and a
//! 51-byte footer pointing at it. Any gzip reader unpacks it as a plain layer; strata's lazy
//! pull reads single files from it with HTTP range requests.

pub mod push;
pub mod write;

pub use crate::layer::toc::*;
