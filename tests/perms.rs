//! Permissions as the kernel's (issue 13, items 1 and 2), as an unprivileged user who is
//! not in the files' group, on a root-made strata mount (allow_other) beside the same
//! operations on ext4 (a plain directory of the test filesystem, the oracle) and on
//! kernel overlayfs over identical branches:
//! - set-id bits cleared by write, pwritev2, fallocate, copy_file_range into, truncate,
//!   ftruncate and O_TRUNC, kept by shared-mmap writes; files in the upper and in the
//!   lower; strata with passthrough (the default as root) and with the writeback cache;
//! - creation in a setgid directory;
//! - POSIX ACLs: default ACL inheritance (files, dirs, inside a setgid dir, from a lower
//!   dir), setfacl updating the mode and clearing setgid, chmod updating the ACL, access
//!   by named user/group entries and the mask, lower ACLs before and after copy-up.
//!
//! Each result is the exit status plus the mode (and ACL) afterwards; after a remount the
//! stored modes and ACLs are compared again.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use strata_tests::mount::{
    is_mounted, pids_with_arg, reap_daemons, run_strata, unmount_path, TempDir,
};
use strata_tests::sys;

const USER: &str = "strata-perm";
const PROBE: &str = env!("CARGO_BIN_EXE_strata-perm-probe");

fn ensure_user() {
    strata_tests::users::ensure_user(USER);
    let st = Command::new("setfacl").arg("--version").output();
    assert!(
        st.is_ok_and(|o| o.status.success()),
        "setfacl missing: run scripts/setup (package acl)"
    );
}

/// `sh -c script` in `dir` as the test user (umask 022): its stdout and stderr, with
/// the tool names and paths stripped from error messages so that mounts compare.
fn as_user(dir: &Path, script: &str) -> String {
    let out = Command::new("setpriv")
        .args(["--reuid", USER, "--regid", USER, "--init-groups", "--"])
        .args([
            "sh",
            "-c",
            &format!("cd '{}' && umask 022 && {script}", dir.display()),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text.lines()
        .map(|l| l.rsplit(": ").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A shell command as root in `dir`; it must succeed.
fn as_root(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .args(["-c", &format!("cd '{}' && {script}", dir.display())])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{script}` in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Mode (octal) and ACL of `p`, one line.
fn mode_acl(p: &Path) -> String {
    let mode = sys::lstat(p).map_or("-".to_string(), |st| format!("{:o}", st.st_mode & 0o7777));
    let acl = Command::new("getfacl")
        .args(["-cp"])
        .arg(p)
        .output()
        .unwrap();
    let acl = String::from_utf8_lossy(&acl.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    format!("{mode} {acl}")
}

/// ext4 (a directory), a strata mount and an overlayfs mount, over the same lower tree.
struct Trio {
    dir: TempDir,
    ext4: PathBuf,
    lower: PathBuf,
    strata: PathBuf,
    ovl: PathBuf,
    strata_opts: String,
    daemons: Vec<i32>,
}

impl Trio {
    /// Directories only; `lower` and `ext4` are filled by the caller before [`Trio::mount`].
    fn new(extra: &str) -> Trio {
        let dir = TempDir::new("perms");
        std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["ext4", "l", "u", "w", "m", "ou", "ow", "o"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
            std::fs::set_permissions(dir.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let strata_opts = format!(
            "lowerdir={},upperdir={},workdir={}{extra}",
            dir.join("l").display(),
            dir.join("u").display(),
            dir.join("w").display()
        );
        Trio {
            ext4: dir.join("ext4"),
            lower: dir.join("l"),
            strata: dir.join("m"),
            ovl: dir.join("o"),
            strata_opts,
            daemons: Vec::new(),
            dir,
        }
    }

    fn mount(&mut self) {
        self.mount_strata();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=on,index=on,metacopy=on",
            self.lower.display(),
            self.dir.join("ou").display(),
            self.dir.join("ow").display()
        );
        sys::mount("overlay", &self.ovl, "overlay", 0, &opts).unwrap();
    }

    fn mount_strata(&mut self) {
        let mnt = self.strata.to_string_lossy().to_string();
        let (ok, log) = run_strata(&["-o", &self.strata_opts, &mnt], &self.dir.join("log"));
        assert!(ok && is_mounted(&self.strata), "strata mount failed: {log}");
        self.daemons = pids_with_arg(&mnt);
    }

    fn remount_strata(&mut self) {
        unmount_path(&self.strata).unwrap();
        reap_daemons(&std::mem::take(&mut self.daemons));
        self.mount_strata();
    }
}

impl Drop for Trio {
    fn drop(&mut self) {
        for m in [&self.strata, &self.ovl] {
            if is_mounted(m) && unmount_path(m).is_err() {
                let _ = sys::umount2(m, libc::MNT_DETACH);
            }
        }
        reap_daemons(&self.daemons);
    }
}

const MODES: &[u32] = &[0o2666, 0o6666, 0o2676, 0o4666, 0o6766, 0o6777, 0o0666];
const OPS: &[&str] = &[
    "write-w",
    "write-rw",
    "write-a",
    "pwritev2",
    "fallocate",
    "cfr",
    "truncate",
    "ftruncate",
    "otrunc",
    "mmap",
];

/// A file `name` in `dir`: 4 KiB, group `group` (root: the user is not in it), `mode`.
fn make_file(dir: &Path, name: &str, group: &str, mode: u32) {
    let p = dir.join(name);
    std::fs::write(&p, vec![0u8; 4096]).unwrap();
    as_root(dir, &format!("chgrp {group} {name}"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn setid_case(extra: &str) {
    ensure_user();
    let mut t = Trio::new(extra);
    let mut names = Vec::new();
    for &mode in MODES {
        for op in OPS {
            for group in ["root", USER] {
                names.push((format!("f{mode:o}-{op}-{group}"), mode, *op, group));
            }
        }
    }
    for d in [&t.ext4, &t.lower] {
        std::fs::write(d.join("src"), b"source").unwrap();
    }
    for (n, mode, _, group) in &names {
        make_file(&t.ext4, n, group, *mode);
        make_file(&t.lower, n, group, *mode);
    }
    t.mount();
    // Files made through the mounts live in their upper dirs.
    for (n, mode, _, group) in &names {
        make_file(&t.ext4, &format!("u{n}"), group, *mode);
        make_file(&t.strata, &format!("u{n}"), group, *mode);
        make_file(&t.ovl, &format!("u{n}"), group, *mode);
    }
    let probe = |root: &Path, op: &str, name: &str| {
        as_user(root, &format!("{PROBE} {op} {}", root.join(name).display()))
    };
    let mut diffs = Vec::new();
    for (n, _, op, _) in &names {
        for name in [n.clone(), format!("u{n}")] {
            let want = probe(&t.ext4, op, &name);
            for (label, root) in [("strata", &t.strata), ("overlayfs", &t.ovl)] {
                let got = probe(root, op, &name);
                if got != want {
                    diffs.push(format!("{label} {op} {name}: {got} (ext4: {want})"));
                }
            }
        }
    }
    assert!(diffs.is_empty(), "{}:\n{}", t.strata_opts, diffs.join("\n"));
    // What was cleared was stored.
    t.remount_strata();
    for (n, ..) in &names {
        for name in [n.clone(), format!("u{n}")] {
            assert_eq!(
                mode_acl(&t.strata.join(&name)),
                mode_acl(&t.ext4.join(&name)),
                "{name} after a remount"
            );
        }
    }
}

#[test]
fn setid_cleared_by_unprivileged_writes_with_passthrough() {
    setid_case("");
}

#[test]
fn setid_cleared_by_unprivileged_writes_with_writeback_cache() {
    setid_case(",passthrough=0");
}

#[test]
fn creation_in_setgid_dir_by_non_member() {
    ensure_user();
    let mut t = Trio::new("");
    for d in [&t.ext4, &t.lower] {
        as_root(d, "mkdir sg && chmod 2777 sg");
    }
    t.mount();
    for d in [&t.ext4, &t.strata, &t.ovl] {
        as_root(d, "mkdir usg && chmod 2777 usg");
    }
    let mut diffs = Vec::new();
    for op in ["create", "mkdir", "mknod"] {
        for mode in ["2755", "2644", "4755", "6777", "0777"] {
            for umask in ["022", "077"] {
                for dir in ["sg", "usg"] {
                    let rel = format!("{dir}/{op}{mode}-{umask}");
                    let run = |root: &Path| {
                        let p = root.join(&rel);
                        let r = as_user(
                            root,
                            &format!("{PROBE} {op} {} {mode} {umask}", p.display()),
                        );
                        let grp = Command::new("stat")
                            .args(["-c", "%G"])
                            .arg(&p)
                            .output()
                            .unwrap();
                        format!("{r} {}", String::from_utf8_lossy(&grp.stdout).trim())
                    };
                    let want = run(&t.ext4);
                    for (label, root) in [("strata", &t.strata), ("overlayfs", &t.ovl)] {
                        let got = run(root);
                        if got != want {
                            diffs.push(format!("{label} {rel}: {got} (ext4: {want})"));
                        }
                    }
                }
            }
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// Root's preparation of a tree (ext4, or through a mount): ACLs of every kind.
const ACL_PREP: &str = "
mkdir da sga && chmod 777 da && setfacl -d --set u::rwx,g::rwx,o::- da &&
chmod 2777 sga && setfacl -d --set u::rwx,g::rwx,o::r-x,u:root:rwx,m::rwx sga &&
for f in own own2 own3 sgacl; do touch $f && chown strata-perm: $f; done &&
setfacl -m u:root:rwx own3 && chgrp root sgacl && chmod 2664 sgacl &&
echo s > acl_r && chmod 600 acl_r && setfacl -m u:strata-perm:r acl_r &&
echo s > acl_m && chmod 600 acl_m && setfacl -m u:strata-perm:r,m::- acl_m &&
echo s > acl_w && chmod 600 acl_w && setfacl -m u:strata-perm:rw acl_w &&
echo s > acl_g && chmod 600 acl_g && setfacl -m g:strata-perm:r acl_g";

/// The lower tree's ACLs (under lo/, in the lower branch and in the ext4 copy).
const ACL_LOWER: &str = "
mkdir -p lo/dx lo/da && chmod 777 lo lo/da && chmod 700 lo/dx &&
setfacl -m u:strata-perm:rx lo/dx && echo s > lo/acl_r && chmod 600 lo/acl_r &&
setfacl -m u:strata-perm:r lo/acl_r &&
for f in own own2 own3; do touch lo/$f && chown strata-perm: lo/$f &&
  setfacl -m u:root:rwx,g:root:r lo/$f; done &&
setfacl -d --set u::rwx,g::rwx,o::-,u:root:r lo/da";

/// The user's steps; each prints what it got.
const ACL_STEPS: &[&str] = &[
    "touch da/f; mkdir da/d; mkdir -m 0700 da/d7; PROBE create da/f4 640 022",
    "touch sga/f; mkdir sga/d",
    "setfacl -m u::rwx,g::rwx,o::rwx own; setfacl -m u:root:r own2",
    "chmod 640 own3",
    "setfacl -m u:root:r sgacl",
    "cat acl_r; cat acl_m; echo hi >> acl_w && echo w-ok; cat acl_g",
    "test -r acl_r && echo r; test -w acl_r || echo not-w; test -r acl_m || echo masked",
    "cat lo/acl_r; ls lo/dx && echo x-ok",
    "chmod 644 lo/own; touch lo/own2",
    "touch lo/da/f; mkdir lo/da/d; mkdir lo/da/d/e",
];

const ACL_PATHS: &[&str] = &[
    "da/f",
    "da/d",
    "da/d7",
    "da/f4",
    "sga/f",
    "sga/d",
    "own",
    "own2",
    "own3",
    "sgacl",
    "acl_w",
    "lo/dx",
    "lo/acl_r",
    "lo/own",
    "lo/own2",
    "lo/own3",
    "lo/da",
    "lo/da/f",
    "lo/da/d",
    "lo/da/d/e",
];

fn acl_state(root: &Path) -> String {
    ACL_PATHS
        .iter()
        .map(|p| format!("{p} {}", mode_acl(&root.join(p))))
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_same(label: &str, step: &str, got: &str, want: &str) -> Option<String> {
    (got != want).then(|| format!("{label} `{step}`:\n{got}\next4:\n{want}"))
}

#[test]
fn posix_acls_enforced_and_inherited() {
    ensure_user();
    let mut t = Trio::new("");
    as_root(&t.ext4, ACL_LOWER);
    as_root(&t.lower, ACL_LOWER);
    t.mount();
    for d in [&t.ext4, &t.strata, &t.ovl] {
        as_root(d, ACL_PREP);
    }
    let mut diffs = Vec::new();
    for step in ACL_STEPS {
        let step = step.replace("PROBE", PROBE);
        let want = as_user(&t.ext4, &step);
        for (label, root) in [("strata", &t.strata), ("overlayfs", &t.ovl)] {
            diffs.extend(check_same(label, &step, &as_user(root, &step), &want));
        }
    }
    // Root chmods a lower file carrying an ACL: copied up with it, its entries updated.
    for d in [&t.ext4, &t.strata, &t.ovl] {
        as_root(d, "chmod 600 lo/own3");
    }
    let want = acl_state(&t.ext4);
    for (label, root) in [("strata", &t.strata), ("overlayfs", &t.ovl)] {
        diffs.extend(check_same(label, "state", &acl_state(root), &want));
    }
    t.remount_strata();
    diffs.extend(check_same(
        "strata",
        "state after a remount",
        &acl_state(&t.strata),
        &want,
    ));
    // Access after the remount, served from what was stored.
    let step = ACL_STEPS[5];
    diffs.extend(check_same(
        "strata",
        step,
        &as_user(&t.strata, step),
        &as_user(&t.ext4, step),
    ));
    assert!(diffs.is_empty(), "{}", diffs.join("\n\n"));
}
