//! What a trace records: the op names, op lists, path globs and [`TraceOptions`].
//!
//! A leaf: the mount options parse these without depending on the tracer or the union.

use std::path::{Path, PathBuf};

macro_rules! ops {
    ($($v:ident = $s:literal),* $(,)?) => {
        /// A traced operation: every FUSE request the adapter serves, plus `copyup`, the
        /// event recorded when a request moved a node up (copy-up, metadata copy, delta).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Op { $(#[doc = $s] $v),* }

        impl Op {
            /// Every op, in declaration order (index = `op as usize`).
            pub const ALL: &'static [Op] = &[$(Op::$v),*];

            /// The name used in traces and on the command line.
            pub fn name(self) -> &'static str {
                match self { $(Op::$v => $s),* }
            }

            /// The op called `s`.
            pub fn parse(s: &str) -> Option<Op> {
                match s { $($s => Some(Op::$v),)* _ => None }
            }
        }
    };
}

ops! {
    Lookup = "lookup", Forget = "forget", Getattr = "getattr", Setattr = "setattr",
    Readlink = "readlink", Mknod = "mknod", Mkdir = "mkdir", Unlink = "unlink",
    Rmdir = "rmdir", Symlink = "symlink", Rename = "rename", Link = "link", Open = "open",
    Read = "read", Write = "write", Flush = "flush", Release = "release", Fsync = "fsync",
    Opendir = "opendir", Readdir = "readdir", Readdirplus = "readdirplus",
    Releasedir = "releasedir", Fsyncdir = "fsyncdir", Statfs = "statfs",
    Setxattr = "setxattr", Getxattr = "getxattr", Listxattr = "listxattr",
    Removexattr = "removexattr", Access = "access", Create = "create",
    Fallocate = "fallocate", Lseek = "lseek", CopyFileRange = "copy_file_range",
    Ioctl = "ioctl", Poll = "poll", Copyup = "copyup",
}

/// Number of ops (size of per-op counter arrays).
pub const N_OPS: usize = Op::ALL.len();

/// Parse a comma- or colon-separated op list (`read,write`) into a bit mask.
pub fn parse_ops(list: &str) -> Result<u64, String> {
    let mut mask = 0u64;
    for name in list
        .split([',', ':'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let op = Op::parse(name).ok_or_else(|| {
            let all: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
            format!(
                "unknown op '{name}' in the trace op list (known: {})",
                all.join(", ")
            )
        })?;
        mask |= 1 << op as u64;
    }
    if mask == 0 {
        return Err("empty trace op list".into());
    }
    Ok(mask)
}

/// A shell-style glob over mount paths: `*` and `?` stay inside one path component, `**`
/// crosses `/`. A leading `/` is optional on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<u8>);

impl Glob {
    /// Compile a pattern.
    pub fn new(pat: &str) -> Glob {
        Glob(pat.trim_start_matches('/').as_bytes().to_vec())
    }

    /// Whether `path` (with or without a leading `/`) matches.
    pub fn matches(&self, path: &[u8]) -> bool {
        let p = match path.first() {
            Some(b'/') => &path[1..],
            _ => path,
        };
        let mut memo = vec![None; (self.0.len() + 1) * (p.len() + 1)];
        glob_match(&self.0, p, 0, 0, &mut memo)
    }
}

/// Whether `pat[pi..]` matches `s[si..]`; `memo` remembers every (pi, si) answered, so a
/// pattern with many stars costs at most len(pat) * len(s) steps, never exponential time.
fn glob_match(pat: &[u8], s: &[u8], pi: usize, si: usize, memo: &mut [Option<bool>]) -> bool {
    let key = pi * (s.len() + 1) + si;
    if let Some(Some(known)) = memo.get(key) {
        return *known;
    }
    let rest_s = s.get(si..).unwrap_or(&[]);
    let answer = match pat.get(pi) {
        None => rest_s.is_empty(),
        Some(b'*') if pat.get(pi + 1) == Some(&b'*') => {
            // `**/` also matches no directory at all.
            (pat.get(pi + 2) == Some(&b'/') && glob_match(pat, s, pi + 3, si, memo))
                || (si..=s.len()).any(|i| glob_match(pat, s, pi + 2, i, memo))
        }
        Some(b'*') => {
            let stop = rest_s
                .iter()
                .position(|&c| c == b'/')
                .unwrap_or(rest_s.len());
            (si..=si + stop).any(|i| glob_match(pat, s, pi + 1, i, memo))
        }
        Some(b'?') => {
            matches!(rest_s.first(), Some(&c) if c != b'/')
                && glob_match(pat, s, pi + 1, si + 1, memo)
        }
        Some(&c) => rest_s.first() == Some(&c) && glob_match(pat, s, pi + 1, si + 1, memo),
    };
    if let Some(slot) = memo.get_mut(key) {
        *slot = Some(answer);
    }
    answer
}

/// What `--trace` and its filters ask for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceOptions {
    /// The trace file (None: tracing off).
    pub file: Option<PathBuf>,
    /// Bit mask of traced ops (`1 << op`); 0 = all.
    pub ops: u64,
    /// Only paths matching this glob.
    pub path: Option<Glob>,
}

/// An absolute form of a trace path given on the command line (the daemon may change
/// directory later).
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir().map_or_else(|_| p.to_path_buf(), |d| d.join(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = Glob::new("/var/lib/**");
        assert!(g.matches(b"/var/lib/db.img"));
        assert!(g.matches(b"/var/lib/a/b/c"));
        assert!(!g.matches(b"/var/log/x"));
        let g = Glob::new("**/*.db");
        assert!(g.matches(b"/x.db"));
        assert!(g.matches(b"/a/b/x.db"));
        assert!(!g.matches(b"/a/b/x.dbx"));
        let g = Glob::new("etc/*");
        assert!(g.matches(b"/etc/passwd"));
        assert!(!g.matches(b"/etc/ssl/certs"));
        assert!(Glob::new("/f?o").matches(b"/foo"));
        assert!(!Glob::new("/f?o").matches(b"/f/o"));
    }

    #[test]
    fn op_lists() {
        let m = parse_ops("read,write").unwrap();
        assert_eq!(m, (1 << Op::Read as u64) | (1 << Op::Write as u64));
        assert!(parse_ops("read,bogus").unwrap_err().contains("bogus"));
        for op in Op::ALL {
            assert_eq!(Op::parse(op.name()), Some(*op));
        }
    }
}
