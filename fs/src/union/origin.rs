//! Where a node is served from (the upper, a lower, a metadata copy or a delta) and its
//! merged path, read from the inode table without I/O: what traces and stats report.

use crate::union::fs::Union;
use crate::union::inode::Placement;

/// Where a node's content is served from, read from the inode table without I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The upper branch (whole file, or directory present there).
    Upper,
    /// Lower branch N.
    Lower(usize),
    /// Upper entry whose data is still in lower branch N (metadata-only copy).
    MetaCopy(usize),
    /// Block-level delta in the upper over lower branch N.
    Delta(usize),
}

impl Origin {
    /// The origin described by a placement.
    pub fn of(p: &Placement) -> Origin {
        let below = p.lower.as_ref().map(|(l, _)| *l);
        match (p.upper, below, p.delta) {
            (true, Some(l), true) => Origin::Delta(l),
            (true, Some(l), false) if !p.is_dir() => Origin::MetaCopy(l),
            (true, _, _) => Origin::Upper,
            (false, Some(l), _) => Origin::Lower(l),
            (false, None, _) => Origin::Lower(
                p.dir
                    .as_ref()
                    .and_then(|d| d.layers.first().map(|(l, _)| *l))
                    .unwrap_or(0),
            ),
        }
    }

    /// The branch label used in traces: "upper", "lower N" or "delta". A metadata-only
    /// copy answers metadata from the upper, so it is "upper" here; reads through an open
    /// handle name the branch the handle reads.
    pub fn label(self) -> Branch {
        match self {
            Origin::Upper | Origin::MetaCopy(_) => Branch::Upper,
            Origin::Lower(n) => Branch::Lower(n),
            Origin::Delta(_) => Branch::Delta,
        }
    }
}

/// The branch that served a request, as written in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Branch {
    /// Not known or not applicable (failed lookup, statfs).
    None,
    /// The upper branch.
    Upper,
    /// Lower branch N.
    Lower(usize),
    /// A block-level delta (upper blocks merged over a lower file).
    Delta,
}

impl Branch {
    pub(crate) fn text(self) -> Option<String> {
        match self {
            Branch::None => None,
            Branch::Upper => Some("upper".into()),
            Branch::Lower(n) => Some(format!("lower {n}")),
            Branch::Delta => Some("delta".into()),
        }
    }
}

impl Union {
    /// Where node `ino` is served from right now and whether it is a directory, from the
    /// inode table (no I/O); None when the table does not hold it.
    pub fn origin(&self, ino: u64) -> Option<(Origin, bool)> {
        self.nodes
            .read()
            .get(ino)
            .map(|n| (Origin::of(&n.place), n.place.is_dir()))
    }

    /// The merged path of node `ino` as `/a/b` (best effort: empty when unreachable).
    pub fn trace_path(&self, ino: u64, name: Option<&std::ffi::OsStr>) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut out = Vec::with_capacity(64);
        if let Some(p) = self.nodes.read().path(ino) {
            for c in p.iter() {
                out.push(b'/');
                out.extend_from_slice(c.as_bytes());
            }
        } else if name.is_none() {
            return out;
        }
        match name {
            Some(n) => {
                out.push(b'/');
                out.extend_from_slice(n.as_bytes());
            }
            None if out.is_empty() => out.push(b'/'),
            None => {}
        }
        out
    }
}
