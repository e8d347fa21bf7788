//! Block deltas: a changed file stored as the blocks that differ from the file below.
//!
//! format.rs is the on-disk encoding (docs/format.md), io.rs reads and writes a delta through
//! its chain, seek.rs answers SEEK_DATA/SEEK_HOLE, compact.rs and flatten.rs fold chains,
//! fsck.rs checks them.

pub mod compact;
pub(crate) mod file;
pub mod flatten;
pub mod format;
pub mod fsck;
pub(crate) mod io;
pub(crate) mod seek;
