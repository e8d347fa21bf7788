//! Layers that stack: rotate a mount's upper into its lowers (unmount, wait for the
//! daemon to exit, push the upper down as the new top lower, fresh upper + workdir,
//! mount again), and what a rotation must keep.
//!
//! Kernel overlayfs is not a perfect oracle across a rotation: it keeps hard links of
//! lower files together only through its index (`WORKDIR/index`), and the rotated mount
//! has a fresh workdir. [`repair_overlay`] brings the kernel's view back to the one
//! before the rotation through its own mount (never touching strata), so the
//! differential can go on; what it had to repair is returned for the report.

use crate::mount::{pid_alive, pids_with_arg, self_check, wait_until, Kind, Mounted};
use crate::ops::FileKind;
use crate::tree::Tree;
use std::collections::BTreeMap;
use std::time::Duration;

/// Unmount `m`, wait (bounded) for its daemon to exit, make its upper the top lower
/// branch, give it a fresh upper and workdir named after `level`, and mount it again.
/// The old workdir is removed, as a layer taken from a stopped container has none.
pub fn rotate(m: &mut Mounted, level: usize) {
    let pids = pids_with_arg(&m.mnt.to_string_lossy());
    m.unmount();
    // Mounted::unmount SIGKILLs a daemon that lingers; a rotation must not need that:
    // the layer must be complete when the daemon exits by itself.
    let exited = wait_until(Duration::from_secs(1), || {
        pids.iter().all(|p| !pid_alive(*p))
    });
    assert!(
        exited,
        "{}: daemon {pids:?} still alive after unmount",
        m.label()
    );
    if let Some(w) = &m.work {
        // Keep the daemon's log of each level beside the branches.
        let log = w.join("strata.log");
        let _ = std::fs::rename(log, m.dir.join(&format!("strata-{}.log", level - 1)));
    }
    let upper = m.upper.take().expect("rotate: a writable mount");
    if let Some(w) = m.work.take() {
        std::fs::remove_dir_all(&w).unwrap_or_else(|e| panic!("rm -rf {}: {e}", w.display()));
    }
    m.lowers.insert(0, upper);
    let u = m.dir.join(&format!("u{level}"));
    let w = m.dir.join(&format!("w{level}"));
    for d in [&u, &w] {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    }
    m.upper = Some(u);
    m.work = Some(w);
    if m.kind == Kind::Overlay || self_check() {
        // The cached option string names the old branches; keep the extra options the
        // kernel accepted at the first mount.
        let extra = m
            .options
            .split(',')
            .filter(|o| !o.starts_with("lowerdir=") && !o.starts_with("upperdir="))
            .filter(|o| !o.starts_with("workdir="))
            .collect::<Vec<_>>()
            .join(",");
        let base = m.branch_options();
        m.options = if extra.is_empty() {
            base
        } else {
            format!("{base},{extra}")
        };
    }
    m.mount();
}

/// path -> st_ino of the paths of `tree` that exist on `m` (lstat, not following).
pub fn inodes(m: &Mounted, tree: &Tree) -> BTreeMap<String, u64> {
    tree.entries
        .keys()
        .filter_map(|p| m.ino(p).ok().map(|i| (p.clone(), i)))
        .collect()
}

/// Paths of `before` whose st_ino is not the same in `after`.
pub fn changed_inodes(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> Vec<String> {
    before
        .iter()
        .filter(|(p, i)| after.get(*p) != Some(i))
        .map(|(p, _)| p.clone())
        .collect()
}

/// Non-directory paths whose entry (or hard-link group) differs between `want` and `got`,
/// or None when `got` has entries `want` lacks or the other way round, or a directory
/// differs: what [`repair_overlay`] cannot mend.
fn differing_files(want: &Tree, got: &Tree) -> Option<Vec<String>> {
    if want.entries.keys().ne(got.entries.keys()) {
        return None;
    }
    let group_of = |t: &Tree, p: &str| t.links.iter().find(|g| g.iter().any(|q| q == p)).cloned();
    let mut out = Vec::new();
    for (p, w) in &want.entries {
        let g = &got.entries[p];
        if w.kind == FileKind::Dir {
            if w != g {
                return None;
            }
            continue;
        }
        if w != g || group_of(want, p) != group_of(got, p) {
            out.push(p.clone());
        }
    }
    Some(out)
}

/// The bytes of every regular file of `tree` on `m`, to repair from after a rotation.
pub fn file_bytes(m: &Mounted, tree: &Tree) -> BTreeMap<String, Vec<u8>> {
    tree.entries
        .iter()
        .filter(|(_, e)| e.kind == FileKind::File)
        .map(|(p, _)| {
            let d = m
                .read(p)
                .unwrap_or_else(|e| panic!("{}: read /{p}: {e}", m.label()));
            (p.clone(), d)
        })
        .collect()
}

/// Bring the kernel mount `o` back to `want` (its merged tree before the rotation, with
/// the `bytes` of its files then) where overlayfs lost track of hard links across the
/// rotation. Returns one line per repaired group of names; Err when the kernel's view
/// departs in a way other than file content, metadata, nlink or link groups, or the
/// repair did not restore it.
///
/// Why the kernel needs this (seen on 6.x with `index=on`): a lower hard link copied up
/// (data or metadata) through one name at one level is found by its other names through
/// the index in the old workdir. After the rotation the copy is in a lower branch and the
/// index is gone, so the other names show the old lower inode again: stale content, mode
/// or xattrs, old nlink, two inodes instead of one. Likewise an alias unlinked at one
/// level leaves the other names of the lower inode reporting its on-disk nlink (one too
/// many), and bytes written through an alias since unlinked are lost to them.
pub fn repair_overlay(
    o: &Mounted,
    want: &Tree,
    bytes: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<String>, String> {
    let got = o.tree();
    let Some(bad) = differing_files(want, &got) else {
        return Err(format!(
            "overlayfs departs from its own view before the rotation in a way the harness \
             cannot repair (not a strata failure; the oracle is wrong here):\n{}",
            want.diff(&got).join("\n")
        ));
    };
    let mut notes = Vec::new();
    let mut done: Vec<String> = Vec::new();
    for p in &bad {
        if done.contains(p) {
            continue;
        }
        let group = want
            .links
            .iter()
            .find(|g| g.contains(p))
            .cloned()
            .unwrap_or_else(|| vec![p.clone()]);
        // A name of the group that shows the inode as it was (but for nlink) keeps it; the
        // others are linked to it again. If none does, the first is written afresh.
        let w = &want.entries[p];
        let same_but_nlink = |q: &String| {
            let mut e = got.entries[q].clone();
            e.nlink = w.nlink;
            e == *w
        };
        let rep = match group.iter().find(|q| same_but_nlink(q)) {
            Some(r) if group.len() > 1 => r.clone(),
            _ => {
                rewrite(o, &group[0], w, bytes.get(&group[0]));
                group[0].clone()
            }
        };
        relink(o, &rep, &group);
        if o.stat(&rep).ok().and_then(|m| m.nlink) != w.nlink {
            // The name kept counts aliases of its lower inode that are gone (overlayfs
            // copies that count up with it): start from a fresh inode instead.
            rewrite(o, &group[0], w, bytes.get(&group[0]));
            relink(o, &group[0], &group);
        }
        notes.push(format!(
            "{group:?}: overlayfs showed {:?} instead of {:?}",
            group.iter().map(|q| &got.entries[q]).collect::<Vec<_>>(),
            w
        ));
        done.extend(group);
    }
    let fixed = o.tree();
    let diff = want.diff(&fixed);
    if !diff.is_empty() {
        return Err(format!(
            "overlayfs repair after rotation did not restore the view (harness bug):\n{}\nrepairs: {notes:?}",
            diff.join("\n")
        ));
    }
    Ok(notes)
}

/// Make every name of `group` but `rep` a hard link of `rep` again.
fn relink(o: &Mounted, rep: &str, group: &[String]) {
    for q in group.iter().filter(|q| *q != rep) {
        o.unlink(q)
            .unwrap_or_else(|e| panic!("overlayfs repair: unlink /{q}: {e}"));
        o.link(rep, q)
            .unwrap_or_else(|e| panic!("overlayfs repair: link /{rep} /{q}: {e}"));
    }
}

/// Replace `p` on the kernel mount by a fresh entry as `w` describes, with `bytes`.
fn rewrite(o: &Mounted, p: &str, w: &crate::tree::Entry, bytes: Option<&Vec<u8>>) {
    let fail =
        |what: &str, e: nix::errno::Errno| -> ! { panic!("overlayfs repair: {what} /{p}: {e}") };
    o.unlink(p).unwrap_or_else(|e| fail("unlink", e));
    match w.kind {
        FileKind::File => {
            let bytes = bytes.unwrap_or_else(|| panic!("overlayfs repair: no bytes of /{p}"));
            o.put(p, bytes).unwrap_or_else(|e| fail("write", e));
        }
        FileKind::Symlink => {
            let t = w.target.clone().unwrap_or_default();
            o.symlink(&t, p).unwrap_or_else(|e| fail("symlink", e));
        }
        FileKind::Fifo => o.mkfifo(p, 0o644).unwrap_or_else(|e| fail("mkfifo", e)),
        k => panic!("overlayfs repair: cannot rewrite /{p} of kind {k:?}"),
    }
    o.chown(p, w.uid, w.gid)
        .unwrap_or_else(|e| fail("chown", e));
    if w.kind != FileKind::Symlink {
        // After chown, which may drop set-id bits.
        o.chmod(p, w.perm).unwrap_or_else(|e| fail("chmod", e));
    }
    for (n, v) in &w.xattrs {
        o.setxattr(p, n, v).unwrap_or_else(|e| fail("setxattr", e));
    }
}
