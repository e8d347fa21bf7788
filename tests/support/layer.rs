//! Branch trees described once and built twice: in the formats strata reads
//! (`.wh.NAME`, `.wh..wh..opq`, `user.overlay.opaque`, ...) and in the formats the
//! kernel's overlayfs reads (char device 0/0, `trusted.overlay.opaque=y`).

use crate::sys;
use std::path::{Path, PathBuf};

/// How a whiteout is written in a lower branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wh {
    /// An empty file `.wh.NAME` beside the hidden name (aufs / OCI layer format).
    File,
    /// A character device 0/0 named NAME (overlayfs format).
    CharDev,
}

/// How a directory is marked opaque in a lower branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opq {
    /// An empty file `.wh..wh..opq` inside the directory (aufs / OCI layer format).
    WhFile,
    /// xattr `trusted.overlay.opaque=y` (overlayfs format).
    Trusted,
    /// xattr `user.overlay.opaque=y` (overlayfs `userxattr` format).
    User,
}

/// Which reader a branch is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Formats exactly as described (strata must read all of them).
    Strata,
    /// Everything translated to what the kernel's overlayfs reads.
    Kernel,
}

#[derive(Clone, Debug)]
enum Item {
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    Sparse {
        path: String,
        size: u64,
        chunks: Vec<(u64, Vec<u8>)>,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    Hardlink {
        path: String,
        existing: String,
    },
    Fifo {
        path: String,
        mode: u32,
    },
    CharDev {
        path: String,
        major: u32,
        minor: u32,
    },
    Whiteout {
        path: String,
        fmt: Wh,
    },
    Opaque {
        path: String,
        fmt: Opq,
    },
    Xattr {
        path: String,
        name: String,
        value: Vec<u8>,
    },
    Owner {
        path: String,
        uid: u32,
        gid: u32,
    },
    Mtime {
        path: String,
        secs: i64,
    },
}

/// One branch tree, as a list of things to create (in order).
#[derive(Clone, Debug, Default)]
pub struct Layer {
    items: Vec<Item>,
}

impl Layer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A regular file with mode 0644 (parents created as 0755 dirs).
    pub fn file(self, path: &str, data: impl AsRef<[u8]>) -> Self {
        self.file_mode(path, data, 0o644)
    }

    pub fn file_mode(mut self, path: &str, data: impl AsRef<[u8]>, mode: u32) -> Self {
        self.items.push(Item::File {
            path: path.into(),
            data: data.as_ref().to_vec(),
            mode,
        });
        self
    }

    /// A sparse file of `size` bytes with data only at the given offsets.
    pub fn sparse(mut self, path: &str, size: u64, chunks: &[(u64, &[u8])]) -> Self {
        self.items.push(Item::Sparse {
            path: path.into(),
            size,
            chunks: chunks.iter().map(|(o, d)| (*o, d.to_vec())).collect(),
        });
        self
    }

    /// A directory with mode 0755.
    pub fn dir(self, path: &str) -> Self {
        self.dir_mode(path, 0o755)
    }

    pub fn dir_mode(mut self, path: &str, mode: u32) -> Self {
        self.items.push(Item::Dir {
            path: path.into(),
            mode,
        });
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.items.push(Item::Symlink {
            path: path.into(),
            target: target.into(),
        });
        self
    }

    /// A hard link `path` to the already created `existing` (same branch).
    pub fn hardlink(mut self, path: &str, existing: &str) -> Self {
        self.items.push(Item::Hardlink {
            path: path.into(),
            existing: existing.into(),
        });
        self
    }

    pub fn fifo(mut self, path: &str) -> Self {
        self.items.push(Item::Fifo {
            path: path.into(),
            mode: 0o644,
        });
        self
    }

    /// A character device that is not a whiteout (e.g. 1/3).
    pub fn chardev(mut self, path: &str, major: u32, minor: u32) -> Self {
        self.items.push(Item::CharDev {
            path: path.into(),
            major,
            minor,
        });
        self
    }

    /// A whiteout hiding `path` in the branches below.
    pub fn whiteout(mut self, path: &str, fmt: Wh) -> Self {
        self.items.push(Item::Whiteout {
            path: path.into(),
            fmt,
        });
        self
    }

    /// Make directory `path` opaque (created if missing).
    pub fn opaque(mut self, path: &str, fmt: Opq) -> Self {
        self.items.push(Item::Opaque {
            path: path.into(),
            fmt,
        });
        self
    }

    pub fn xattr(mut self, path: &str, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.items.push(Item::Xattr {
            path: path.into(),
            name: name.into(),
            value: value.as_ref().to_vec(),
        });
        self
    }

    pub fn owner(mut self, path: &str, uid: u32, gid: u32) -> Self {
        self.items.push(Item::Owner {
            path: path.into(),
            uid,
            gid,
        });
        self
    }

    /// Set the mtime (and atime) of `path` after everything else is built.
    pub fn mtime(mut self, path: &str, secs: i64) -> Self {
        self.items.push(Item::Mtime {
            path: path.into(),
            secs,
        });
        self
    }

    /// Create the tree under `root` (which must exist) for `flavor`.
    pub fn build(&self, root: &Path, flavor: Flavor) {
        let at = |p: &str| -> PathBuf {
            if p.is_empty() {
                root.to_path_buf()
            } else {
                root.join(p)
            }
        };
        let parents = |p: &str| {
            if let Some(parent) = at(p).parent() {
                std::fs::create_dir_all(parent)
                    .unwrap_or_else(|e| panic!("mkdir -p {}: {e}", parent.display()));
            }
        };
        let ok = |what: &str, p: &str, r: sys::R<()>| {
            r.unwrap_or_else(|e| panic!("building layer: {what} {}: {e}", at(p).display()))
        };
        let mut times = Vec::new();
        for item in &self.items {
            match item {
                Item::File { path, data, mode } => {
                    parents(path);
                    std::fs::write(at(path), data).unwrap_or_else(|e| panic!("write {path}: {e}"));
                    ok("chmod", path, sys::chmod(&at(path), *mode));
                }
                Item::Sparse { path, size, chunks } => {
                    parents(path);
                    let fd = sys::open(
                        &at(path),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                        0o644,
                    )
                    .unwrap_or_else(|e| panic!("create {path}: {e}"));
                    for (off, d) in chunks {
                        ok("pwrite", path, sys::pwrite_all(&fd, d, *off).map(drop));
                    }
                    ok("ftruncate", path, sys::ftruncate(&fd, *size));
                    ok("chmod", path, sys::chmod(&at(path), 0o644));
                }
                Item::Dir { path, mode } => {
                    parents(path);
                    match sys::mkdir(&at(path), 0o755) {
                        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                        Err(e) => panic!("mkdir {path}: {e}"),
                    }
                    ok("chmod", path, sys::chmod(&at(path), *mode));
                }
                Item::Symlink { path, target } => {
                    parents(path);
                    ok("symlink", path, sys::symlink(target, &at(path)));
                }
                Item::Hardlink { path, existing } => {
                    parents(path);
                    ok("link", path, sys::link(&at(existing), &at(path)));
                }
                Item::Fifo { path, mode } => {
                    parents(path);
                    ok(
                        "mkfifo",
                        path,
                        sys::mknod(&at(path), libc::S_IFIFO | 0o644, 0, 0),
                    );
                    ok("chmod", path, sys::chmod(&at(path), *mode));
                }
                Item::CharDev { path, major, minor } => {
                    parents(path);
                    ok(
                        "mknod",
                        path,
                        sys::mknod(&at(path), libc::S_IFCHR | 0o644, *major, *minor),
                    );
                }
                Item::Whiteout { path, fmt } => {
                    parents(path);
                    let fmt = if flavor == Flavor::Kernel {
                        Wh::CharDev
                    } else {
                        *fmt
                    };
                    match fmt {
                        Wh::CharDev => {
                            ok("mknod", path, sys::mknod(&at(path), libc::S_IFCHR, 0, 0))
                        }
                        Wh::File => {
                            let p = at(path);
                            let name = p.file_name().expect("whiteout name").to_string_lossy();
                            let wh = p.with_file_name(format!(".wh.{name}"));
                            std::fs::write(&wh, b"")
                                .unwrap_or_else(|e| panic!("write {}: {e}", wh.display()));
                        }
                    }
                }
                Item::Opaque { path, fmt } => {
                    let p = at(path);
                    std::fs::create_dir_all(&p)
                        .unwrap_or_else(|e| panic!("mkdir -p {}: {e}", p.display()));
                    let fmt = if flavor == Flavor::Kernel {
                        Opq::Trusted
                    } else {
                        *fmt
                    };
                    match fmt {
                        Opq::WhFile => std::fs::write(p.join(".wh..wh..opq"), b"")
                            .unwrap_or_else(|e| panic!("opaque marker in {path}: {e}")),
                        Opq::Trusted => ok(
                            "setxattr",
                            path,
                            sys::lsetxattr(&p, "trusted.overlay.opaque", b"y", 0),
                        ),
                        Opq::User => ok(
                            "setxattr",
                            path,
                            sys::lsetxattr(&p, "user.overlay.opaque", b"y", 0),
                        ),
                    }
                }
                Item::Xattr { path, name, value } => {
                    ok("setxattr", path, sys::lsetxattr(&at(path), name, value, 0))
                }
                Item::Owner { path, uid, gid } => {
                    ok("lchown", path, sys::lchown(&at(path), *uid, *gid))
                }
                Item::Mtime { path, secs } => times.push((path.clone(), *secs)),
            }
        }
        for (path, secs) in times {
            ok(
                "utimensat",
                &path,
                sys::lutimens(&at(&path), (secs, 0), (secs, 0)),
            );
        }
    }
}
