//! The tree of a lazy layer, made from its TOC alone: directories, links, devices, metadata,
//! whiteouts as extraction makes them (the TOC is turned into a tar without file data and
//! extracted by the usual, path-safe code), and each regular file a placeholder of its real
//! size (sparse: no disk) marked pending.

use std::fs::File;

use base64::Engine;
use nix::fcntl::OFlag;
use strata_fs::union::branch::Branch;

use crate::err;
use crate::layer::{info_path, LayerInfo};
use crate::store::{remove_tree, Store};
use crate::util::{now_secs, write_atomic, write_json, Ctx, Result};

use super::super::toc::Toc;
use super::{files, mark_pending, state_path, toc_path, LazyState};

/// Seconds since the epoch of an RFC 3339 time ("2019-08-20T10:30:43Z"; fractions and
/// offsets other than Z are read as far as they go), 0 when unreadable.
pub fn parse_time(s: &str) -> i64 {
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|v| v.parse::<i64>().ok());
    let (Some(y), Some(m), Some(d), Some(hh), Some(mm), Some(ss)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return 0;
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86400 + hh * 3600 + mm * 60 + ss
}

/// The TOC as a tar of empty entries, for the extractor.
fn skeleton_tar(toc: &Toc) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let bad = |e: std::io::Error| err!("the eStargz TOC cannot be laid out: {e}");
    for e in toc.entries.iter().filter(|e| e.kind != "chunk") {
        let mut h = tar::Header::new_gnu();
        h.set_mode((e.mode & 0o7777) as u32);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(parse_time(&e.modtime).max(0) as u64);
        h.set_size(0);
        let _ = h.set_username(&e.user_name);
        let _ = h.set_groupname(&e.group_name);
        h.set_entry_type(match e.kind.as_str() {
            "dir" => tar::EntryType::Directory,
            "reg" => tar::EntryType::Regular,
            "symlink" => tar::EntryType::Symlink,
            "hardlink" => tar::EntryType::Link,
            "char" => tar::EntryType::Char,
            "block" => tar::EntryType::Block,
            "fifo" => tar::EntryType::Fifo,
            other => {
                return Err(err!(
                    "the eStargz TOC has an entry {} of unknown type {other:?}",
                    e.name
                ))
            }
        });
        if matches!(e.kind.as_str(), "char" | "block") {
            h.set_device_major(e.dev_major as u32).map_err(bad)?;
            h.set_device_minor(e.dev_minor as u32).map_err(bad)?;
        }
        if !e.xattrs.is_empty() {
            let mut exts = Vec::new();
            for (k, v) in &e.xattrs {
                let v = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|_| err!("the eStargz TOC has a bad xattr value on {}", e.name))?;
                exts.push((format!("SCHILY.xattr.{k}"), v));
            }
            b.append_pax_extensions(exts.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(bad)?;
        }
        let name = if e.kind == "dir" && e.name.is_empty() {
            "./"
        } else {
            e.name.as_str()
        };
        match e.kind.as_str() {
            "symlink" | "hardlink" => b.append_link(&mut h, name, &e.link_name).map_err(bad)?,
            _ => b.append_data(&mut h, name, std::io::empty()).map_err(bad)?,
        }
    }
    b.into_inner().map_err(bad)
}

/// Lay out lazy layer `hex` from `toc` and publish it with its records. A layer already in
/// the store is left as it is.
pub fn build(
    store: &Store,
    hex: &str,
    toc_bytes: &[u8],
    toc: &Toc,
    state: &LazyState,
) -> Result<()> {
    let staging = Staging(store.staging_dir("lazy")?);
    let tree = staging.0.join("tree");
    std::fs::create_dir(&tree).ctx(|| format!("cannot create {}", tree.display()))?;
    let tar = skeleton_tar(toc)?;
    crate::layer::extract::extract_opts(&tar[..], &tree, true)?;
    let branch = Branch::open(&tree, "lazy layer").map_err(|e| err!("{e}"))?;
    let (regs, _) = files(toc, state.toc_offset);
    let mut size = 0;
    for f in &regs {
        let fd = branch
            .open_at(&f.rel, OFlag::O_WRONLY, 0)
            .map_err(|e| err!("cannot lay out {} of the lazy layer: {e}", f.rel.display()))?;
        let file = File::from(fd);
        let st = nix::sys::stat::fstat(&file)
            .map_err(|e| err!("cannot stat {}: {e}", f.rel.display()))?;
        let placed = file
            .set_len(f.size)
            .and_then(|()| mark_pending(&file))
            .and_then(|()| {
                let at = nix::sys::time::TimeSpec::new(st.st_atime, st.st_atime_nsec);
                let mt = nix::sys::time::TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
                nix::sys::stat::futimens(&file, &at, &mt).map_err(std::io::Error::from)
            });
        placed.map_err(|e| err!("cannot lay out {} of the lazy layer: {e}", f.rel.display()))?;
        size += f.size;
    }
    let _lock = store.lock_exclusive()?;
    let dest = store.layer_dir(hex);
    if dest.is_dir() && info_path(store, hex).is_file() {
        return Ok(());
    }
    // Records first: a layer directory without them would be taken for a complete one.
    write_atomic(&toc_path(store, hex), toc_bytes)?;
    write_json(&state_path(store, hex), state)?;
    if dest.exists() {
        remove_tree(&dest)?;
    }
    std::fs::rename(&tree, &dest)
        .ctx(|| format!("cannot move the layer into {}", dest.display()))?;
    write_json(
        &info_path(store, hex),
        &LayerInfo {
            diff_id: format!("sha256:{hex}"),
            size,
            created: now_secs(),
            native: None,
        },
    )?;
    Ok(())
}

/// A staging directory removed when dropped.
struct Staging(std::path::PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = remove_tree(&self.0);
    }
}
