//! The control socket: a running mount answers `strata whence` and `strata fs stats` over a
//! unix socket, one JSON request and one JSON response per line (docs/control.md).
//!
//! Where the socket is: `WORKDIR/strata.sock` for a writable union (when that path fits a
//! socket address), else `REGISTRY/<hash>.sock`. Either way `REGISTRY/<hash>.sock` finds
//! it (a symlink to the workdir socket), where `<hash>` is [`mount_key`] of the mountpoint
//! and REGISTRY is the first usable of [`registry_dirs`] for the daemon's uid. Clients
//! find the mountpoint of a path and its owner in /proc/self/mountinfo.

use crate::types::{err_no, Layer};
use crate::union::branch::stat_at;
use crate::union::fs::Union;
use crate::union::inode::Placement;
use crate::union::resolve::Resolved;
use crate::union::whiteout::{has_whiteout_file, is_whiteout_entry};
use serde::Serialize;
use serde_json::Value;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Protocol version reported by `ping`.
pub const PROTOCOL: u32 = 1;
/// Longest socket path we bind (sun_path holds 108 bytes with the NUL).
pub(crate) const MAX_SOCK_PATH: usize = 100;

/// A short stable key for a mountpoint: FNV-1a 64 of its bytes, in hex.
pub fn mount_key(mountpoint: &Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in mountpoint.as_os_str().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Registry directories for mounts of `uid`, most preferred first.
pub fn registry_dirs(uid: u32) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if uid == 0 {
        v.push(PathBuf::from("/run/strata"));
    }
    v.push(PathBuf::from(format!("/run/user/{uid}/strata")));
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        let p = Path::new(&x).join("strata");
        if !v.contains(&p) {
            v.push(p);
        }
    }
    v.push(PathBuf::from(format!("/tmp/strata-{uid}")));
    v
}

/// Where one path of a mount comes from (the `whence` response).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Whence {
    /// The path inside the mount, `/`-rooted.
    pub path: String,
    /// "upper", "lower", "metacopy", "delta", "whiteout", "opaque" or "absent".
    pub origin: &'static str,
    /// The lower branch that holds the data (or is hidden).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    /// Whether it is a directory.
    pub dir: bool,
    /// Further lower branches merged into a directory.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<usize>,
    /// Path in the lower branch when it differs (rename, redirect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower_path: Option<String>,
    /// Delta: blocks held in the upper.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<u64>,
    /// Delta: blocks of the whole file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_blocks: Option<u64>,
    /// Delta: block size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u64>,
    /// Whiteout: where the whiteout is ("upper" or "lower N").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whiteout_in: Option<String>,
    /// One line for people.
    pub text: String,
}

fn list(layers: &[usize]) -> String {
    layers
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn shown(p: &Path) -> String {
    format!("/{}", p.display())
}

impl Union {
    /// Which branch serves `path` (relative to the mount root; a leading `/` is allowed),
    /// and for a name that does not exist, what hides it.
    pub fn whence(&self, path: &str) -> Result<Whence, String> {
        let rel: PathBuf = Path::new(path.trim_start_matches('/'))
            .components()
            .collect();
        let r = if rel.as_os_str().is_empty() {
            self.resolve_root()
        } else {
            self.resolve_path(&rel)
        };
        match r {
            Ok(r) => Ok(self.describe(&rel, &r)),
            Err(e) if matches!(err_no(&e), libc::ENOENT | libc::ENOTDIR) => self.hidden(&rel),
            Err(e) => Err(format!("{}: {e}", shown(&rel))),
        }
    }

    fn describe(&self, rel: &Path, r: &Resolved) -> Whence {
        let p: &Placement = &r.place;
        let mut w = Whence {
            path: shown(rel),
            dir: p.is_dir(),
            ..Whence::default()
        };
        if p.is_dir() {
            let layers = p.dir.as_ref().map(|d| d.layer_ids()).unwrap_or_default();
            if let Some(lp) = p.dir.as_ref().and_then(|d| d.lower_path()) {
                if lp != rel {
                    w.lower_path = Some(shown(lp));
                }
            }
            let (head, merged) = if p.upper {
                w.origin = "upper";
                ("upper (dir".to_string(), layers)
            } else {
                w.origin = "lower";
                let first = layers.first().copied().unwrap_or(0);
                w.layer = Some(first);
                (
                    format!("lower {first} (dir"),
                    layers.into_iter().skip(1).collect(),
                )
            };
            let mut text = head;
            if !merged.is_empty() {
                text.push_str(&format!(", merged with lower {}", list(&merged)));
            }
            if p.redirected {
                if let Some(lp) = &w.lower_path {
                    text.push_str(&format!(", renamed from {lp}"));
                }
            }
            text.push(')');
            w.merged = merged;
            w.text = text;
            return w;
        }
        let below = p.lower.as_ref();
        if let Some((l, lp)) = below {
            w.layer = Some(*l);
            if lp != rel {
                w.lower_path = Some(shown(lp));
            }
        }
        let at = w
            .lower_path
            .as_ref()
            .map(|lp| format!(" at {lp}"))
            .unwrap_or_default();
        match (p.upper, below) {
            (true, Some((l, _))) if p.delta => {
                w.origin = "delta";
                let (have, total, block) = self.delta_coverage(r);
                w.blocks = Some(have);
                w.total_blocks = Some(total);
                w.block_size = Some(block);
                w.text = format!("delta over lower {l}{at}, {have} of {total} blocks");
            }
            (true, Some((l, _))) => {
                w.origin = "metacopy";
                w.text = format!("metadata-only copy over lower {l}{at}");
            }
            (true, None) => {
                w.origin = "upper";
                w.text = "upper".into();
            }
            (false, Some((l, _))) => {
                w.origin = "lower";
                w.text = format!("lower {l}{at}");
            }
            (false, None) => {
                w.origin = "absent";
                w.text = "not in any branch".into();
            }
        }
        w
    }

    /// Blocks in the upper, blocks in the file, block size of a delta; the open delta's
    /// map when one is open (it is the newest), else the record on disk.
    fn delta_coverage(&self, r: &Resolved) -> (u64, u64, u64) {
        let live = self
            .deltas
            .lock()
            .get(&r.ino)
            .and_then(std::sync::Weak::upgrade);
        let block = r
            .meta
            .as_ref()
            .and_then(|m| m.delta.as_ref())
            .map_or(crate::delta::format::DEFAULT_BLOCK, |d| d.block.max(1));
        if let Some((have, total)) = live.and_then(|d| d.coverage()) {
            return (have, total, block);
        }
        let have = r
            .meta
            .as_ref()
            .and_then(|m| m.delta.as_ref())
            .map_or(0, |d| d.blocks());
        let size = r.st.st_size.max(0) as u64;
        (have, size.div_ceil(block), block)
    }

    /// A name that does not resolve: find the whiteout or opaque directory that hides a
    /// lower entry, if any.
    fn hidden(&self, rel: &Path) -> Result<Whence, String> {
        let mut w = Whence {
            path: shown(rel),
            origin: "absent",
            text: "does not exist".into(),
            ..Whence::default()
        };
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Ok(w);
        };
        let pr = if parent.as_os_str().is_empty() {
            self.resolve_root()
        } else {
            self.resolve_path(parent)
        };
        let Ok(pr) = pr else {
            w.text = "does not exist (nor does its parent directory)".into();
            return Ok(w);
        };
        if !pr.place.is_dir() {
            return Ok(w);
        }
        let mut hider: Option<(&'static str, String)> = None;
        if pr.place.upper && self.upper.is_some() {
            if let Ok(ud) = self.dirfd(Layer::Upper, parent) {
                let char_wh = stat_at(ud.as_fd(), name).is_ok_and(|st| {
                    is_whiteout_entry(&self.meta, ud.as_fd(), name, &st).unwrap_or(true)
                });
                if char_wh || has_whiteout_file(ud.as_fd(), name).unwrap_or(false) {
                    hider = Some(("whiteout", "upper".into()));
                } else if pr.place.dir.is_none() {
                    hider = Some(("opaque", "upper".into()));
                }
            }
        }
        let layers: Vec<(usize, std::path::PathBuf)> = match &pr.place.dir {
            Some(d) => d.layers.clone(),
            None => (0..self.lowers.len())
                .map(|l| (l, parent.to_path_buf()))
                .collect(),
        };
        for (l, lpath) in layers {
            let Ok(d) = self.dirfd(Layer::Lower(l), &lpath) else {
                continue;
            };
            match stat_at(d.as_fd(), name) {
                Ok(st) if is_whiteout_entry(&self.meta, d.as_fd(), name, &st).unwrap_or(true) => {
                    hider.get_or_insert(("whiteout", format!("lower {l}")));
                }
                Ok(_) => {
                    let Some((how, where_)) = hider else { continue };
                    w.origin = how;
                    w.layer = Some(l);
                    w.whiteout_in = Some(where_.clone());
                    w.text = match (how, where_.as_str()) {
                        ("opaque", _) => format!("opaque directory hides lower {l}"),
                        (_, "upper") => format!("whiteout hides lower {l}"),
                        (_, at) => format!("whiteout in {at} hides lower {l}"),
                    };
                    return Ok(w);
                }
                Err(_) => {
                    if has_whiteout_file(d.as_fd(), name).unwrap_or(false) {
                        hider.get_or_insert(("whiteout", format!("lower {l}")));
                    }
                }
            }
        }
        if let Some((how, where_)) = hider {
            if how == "whiteout" {
                w.origin = "whiteout";
                w.text = format!("whiteout in {where_} (hides nothing below)");
                w.whiteout_in = Some(where_);
            }
        }
        Ok(w)
    }
}

/// A strata mount found in /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct MountEntry {
    /// The mountpoint.
    pub mountpoint: PathBuf,
    /// The uid that mounted it (FUSE `user_id=`), which decides the registry directory.
    pub uid: u32,
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(o) if b[i] == b'\\' => {
                let v = u16::from(o[0] - b'0') * 64
                    + u16::from(o[1] - b'0') * 8
                    + u16::from(o[2] - b'0');
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// The strata mount that contains the absolute path `path` (the innermost one).
pub fn find_mount(path: &Path) -> io::Result<MountEntry> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut best: Option<MountEntry> = None;
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(mp), Some(fstype)) = (fields.get(4), post.first()) else {
            continue;
        };
        let mp = unescape(mp);
        if !path.starts_with(&mp) {
            continue;
        }
        if best
            .as_ref()
            .is_some_and(|b| b.mountpoint.as_os_str().len() > mp.as_os_str().len())
        {
            continue;
        }
        let uid = post
            .get(2)
            .and_then(|o| o.split(',').find_map(|kv| kv.strip_prefix("user_id=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // An inner non-strata mount hides the strata one for this path.
        best = Some(MountEntry {
            mountpoint: mp,
            // Mounted by root through mount(2), strata's mounts show as plain "fuse".
            uid: if matches!(*fstype, "fuse.strata" | "fuse") {
                uid
            } else {
                u32::MAX
            },
        });
    }
    match best {
        Some(m) if m.uid != u32::MAX => Ok(m),
        _ => Err(io::Error::other(format!(
            "{} is not inside a mounted strata union",
            path.display()
        ))),
    }
}

/// Connect to the control socket of the mount `m`.
pub fn connect(m: &MountEntry) -> io::Result<UnixStream> {
    let key = format!("{}.sock", mount_key(&m.mountpoint));
    let mut dirs = registry_dirs(m.uid);
    for d in registry_dirs(nix::unistd::geteuid().as_raw()) {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    let mut last = None;
    for d in dirs {
        let p = d.join(&key);
        if std::fs::symlink_metadata(&p).is_err() {
            continue;
        }
        match UnixStream::connect(&p) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(format!("{}: {e}", p.display())),
        }
    }
    Err(io::Error::other(match last {
        Some(e) => format!(
            "cannot reach the strata daemon of {}: {e}",
            m.mountpoint.display()
        ),
        None => format!(
            "no control socket registered for {} (mounted by an older strata, or by another user?)",
            m.mountpoint.display()
        ),
    }))
}

/// Send one request and read its response.
pub fn request(conn: &mut UnixStream, req: &Value) -> io::Result<Value> {
    let mut line = req.to_string().into_bytes();
    line.push(b'\n');
    // A daemon that refuses the connection answers and closes at once: the write may
    // fail, and the answer (saying why) is still there to read.
    let wrote = conn.write_all(&line);
    let mut resp = String::new();
    let read = BufReader::new(&*conn).read_line(&mut resp);
    match (serde_json::from_str(&resp), wrote, read) {
        (Ok(v), _, _) => Ok(v),
        (Err(_), Err(e), _) | (Err(_), Ok(()), Err(e)) => Err(e),
        (Err(e), Ok(()), Ok(_)) => Err(io::Error::other(format!("bad response: {e}"))),
    }
}
