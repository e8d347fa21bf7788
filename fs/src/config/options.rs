//! Mount options, parsed from fuse-overlayfs-compatible `-o` strings.

use crate::config::idmap::{system_overflow, IdMap};
use crate::config::size::parse_size;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `strata mount -o ...` can set.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Lower branches, topmost first.
    pub lowerdirs: Vec<PathBuf>,
    /// The writable branch; None for a read-only union.
    pub upperdir: Option<PathBuf>,
    /// Scratch directory on the upper's filesystem for atomic copy-up.
    pub workdir: Option<PathBuf>,
    /// uid mapping between the branches and the mount (fuse-overlayfs uidmapping=HOST:TO:LEN).
    pub uidmap: IdMap,
    /// gid mapping between the branches and the mount (fuse-overlayfs gidmapping=HOST:TO:LEN).
    pub gidmap: IdMap,
    /// Report every file as owned by this uid (squash_to_root / squash_to_uid).
    pub squash_uid: Option<u32>,
    /// Report every file as owned by this gid (squash_to_root / squash_to_gid).
    pub squash_gid: Option<u32>,
    /// Report nlink 1 for directories (static_nlink).
    pub static_nlink: bool,
    /// No xattrs through the mount (noxattrs=1): every xattr request answers ENOSYS, as
    /// fuse-overlayfs does, which the kernel turns into EOPNOTSUPP.
    pub no_xattrs: bool,
    /// Skip fsync on the branches (fsync=0 / volatile).
    pub no_fsync: bool,
    /// Entry and attribute cache lifetime handed to the kernel.
    pub timeout: Duration,
    /// Number of request threads (0 = choose from the CPU count).
    pub threads: usize,
    /// Mount read-only even with an upper.
    pub read_only: bool,
    /// Use FUSE passthrough for whole files when allowed (root).
    pub passthrough: bool,
    /// Lower files of at least this size become block-level deltas when written
    /// (u64::MAX: never; smaller files are copied up whole).
    pub delta_threshold: u64,
    /// Block size of delta files (0: the default, 4 KiB).
    pub delta_block: u64,
    /// A delta holding more than this fraction of its blocks is made a whole file.
    pub compact_ratio: f64,
    /// Name shown as the mount source.
    pub fsname: String,
    /// Extra options passed to the kernel mount unchanged (e.g. allow_other, dev, suid).
    pub kernel: Vec<String>,
    /// Op-by-op tracing (trace=FILE, trace_ops=read:write, trace_path=GLOB).
    pub trace: crate::observe::filter::TraceOptions,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            lowerdirs: Vec::new(),
            upperdir: None,
            workdir: None,
            uidmap: IdMap::default(),
            gidmap: IdMap::default(),
            squash_uid: None,
            squash_gid: None,
            static_nlink: false,
            no_xattrs: false,
            no_fsync: false,
            timeout: Duration::from_secs(86400),
            threads: 0,
            read_only: false,
            passthrough: true,
            delta_threshold: 1 << 20,
            delta_block: 0,
            compact_ratio: 0.5,
            fsname: "strata".into(),
            kernel: Vec::new(),
            trace: crate::observe::filter::TraceOptions::default(),
        }
    }
}

/// Split on unescaped `sep`. With `unescape`, `\X` becomes `X`; without, only `\sep`
/// loses its backslash (so an inner level can still see its own escapes).
fn split_escaped(s: &str, sep: char, unescape: bool) -> Vec<String> {
    split_quoted(s, sep, unescape, false)
}

/// [`split_escaped`], and with `quotes` a `sep` between double quotes does not split
/// (the quotes stay): containers/storage passes
/// `context="system_u:object_r:container_file_t:s0:c1,c2"`, as libmount and the
/// kernel's LSM option parser read it.
fn split_quoted(s: &str, sep: char, unescape: bool, quotes: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quotes && c == '"' {
            quoted = !quoted;
            cur.push(c);
            continue;
        }
        if c == '\\' {
            match chars.next() {
                Some(n) if unescape || n == sep => cur.push(n),
                Some(n) => {
                    cur.push('\\');
                    cur.push(n);
                }
                None => cur.push('\\'),
            }
        } else if c == sep && !quoted {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// `"text"` without its quotes; anything else unchanged.
fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// Errors quote the caller's text; a newline or terminal escape in it must not split or
/// colour the one error line, so control characters are shown escaped.
fn one_line(msg: &str) -> String {
    msg.chars()
        .map(|c| match c.is_control() {
            true => c.escape_debug().to_string(),
            false => c.to_string(),
        })
        .collect()
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "on" | "yes" | "true" | "y" => Ok(true),
        "0" | "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(format!("option {key}={v}: expected on/off or 1/0")),
    }
}

fn parse_u32(key: &str, v: &str) -> Result<u32, String> {
    v.parse()
        .map_err(|_| format!("option {key}={v}: expected a number"))
}

impl MountOptions {
    /// Parse one or more comma-separated option strings (several `-o` are allowed).
    pub fn parse<S: AsRef<str>>(groups: &[S]) -> Result<MountOptions, String> {
        let mut o = MountOptions::default();
        for group in groups {
            for opt in split_quoted(group.as_ref(), ',', false, true) {
                o.apply(&opt).map_err(|e| one_line(&e))?;
            }
        }
        if o.lowerdirs.is_empty() {
            return Err(
                "no lowerdir given: pass -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR]"
                    .into(),
            );
        }
        if o.upperdir.is_some() != o.workdir.is_some() {
            return Err("upperdir and workdir go together: give both or neither".into());
        }
        Ok(o)
    }

    /// Check one option alone (its name and value), without the checks of a whole set.
    pub fn check_one(opt: &str) -> Result<(), String> {
        MountOptions::default().apply(opt).map_err(|e| one_line(&e))
    }

    fn apply(&mut self, opt: &str) -> Result<(), String> {
        let opt = opt.trim();
        if opt.is_empty() {
            return Ok(());
        }
        let (key, val) = match opt.split_once('=') {
            // A double-quoted value is the text between the quotes.
            Some((k, v)) => (k, Some(unquote(v))),
            None => (opt, None),
        };
        let need = |v: Option<&str>| -> Result<String, String> {
            v.map(str::to_string)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("option {key} needs a value ({key}=...)"))
        };
        match key {
            "lowerdir" => {
                let v = need(val)?;
                // fuse-overlayfs and overlayfs list the top layer first; "::" is a data-only
                // separator in overlayfs that we treat like ":".
                self.lowerdirs = split_escaped(&v, ':', true)
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect();
            }
            "upperdir" => self.upperdir = Some(PathBuf::from(need(val)?)),
            "workdir" => self.workdir = Some(PathBuf::from(need(val)?)),
            "uidmapping" => {
                self.uidmap = IdMap::parse(&need(val)?)?.with_overflow(system_overflow("uid"))
            }
            "gidmapping" => {
                self.gidmap = IdMap::parse(&need(val)?)?.with_overflow(system_overflow("gid"))
            }
            "squash_to_root" => {
                self.squash_uid = Some(0);
                self.squash_gid = Some(0);
            }
            "squash_to_uid" => self.squash_uid = Some(parse_u32(key, &need(val)?)?),
            "squash_to_gid" => self.squash_gid = Some(parse_u32(key, &need(val)?)?),
            "static_nlink" => self.static_nlink = true,
            "noxattrs" => self.no_xattrs = parse_bool(key, val.unwrap_or("1"))?,
            "noacl"
            | "xattr_permissions"
            | "fast_ino"
            | "fast_ino_check"
            | "plugins"
            | "context"
            | "fscontext"
            | "defcontext"
            | "rootcontext"
            | "redirect_dir"
            | "index"
            | "metacopy"
            | "xino"
            | "userxattr"
            | "default_permissions"
            | "nfs_export" => {}
            "volatile" => self.no_fsync = true,
            "fsync" => self.no_fsync = !parse_bool(key, &need(val)?)?,
            "timeout" => {
                let v = need(val)?;
                let secs: f64 = v
                    .parse()
                    .map_err(|_| format!("option timeout={v}: expected seconds"))?;
                if !(0.0..=1e9).contains(&secs) {
                    return Err(format!("option timeout={v}: out of range"));
                }
                self.timeout = Duration::from_secs_f64(secs);
            }
            "threaded" => {
                let v = val.unwrap_or("1");
                // fuse-overlayfs takes a boolean; a larger number is a thread count.
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("option threaded={v}: expected a number"))?;
                self.threads = if n <= 1 { usize::from(n == 0) } else { n };
            }
            "threads" => {
                self.threads = parse_u32(key, &need(val)?)? as usize;
            }
            "passthrough" => self.passthrough = parse_bool(key, val.unwrap_or("1"))?,
            "delta_threshold" => {
                let v = need(val)?;
                self.delta_threshold = parse_size(&v)
                    .ok_or_else(|| format!("option delta_threshold={v}: expected a size"))?;
            }
            "delta_block" => {
                let v = need(val)?;
                self.delta_block = parse_size(&v)
                    .filter(|b| crate::delta::format::valid_block(*b))
                    .ok_or_else(|| {
                        format!("option delta_block={v}: expected a power of two from 512 to 16M")
                    })?;
            }
            "compact_ratio" => {
                let v = need(val)?;
                self.compact_ratio = v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("option compact_ratio={v}: expected 0.0 to 1.0"))?;
            }
            "nodelta" => self.delta_threshold = u64::MAX,
            "trace" => {
                self.trace.file = Some(crate::observe::filter::absolute(&PathBuf::from(need(val)?)))
            }
            // Ops are separated by ':' here since ',' separates mount options.
            "trace_ops" => self.trace.ops = crate::observe::filter::parse_ops(&need(val)?)?,
            "trace_path" => self.trace.path = Some(crate::observe::filter::Glob::new(&need(val)?)),
            "fsname" | "source" => self.fsname = need(val)?,
            "ro" => self.read_only = true,
            "rw" => self.read_only = false,
            "allow_other" | "allow_root" | "auto_unmount" => self.kernel.push(key.to_string()),
            // Generic VFS flags (nosuid, noatime, lazytime ...): see vfs_flags.rs.
            k if val.is_none() && crate::config::vfs_flags::flag_word(k).is_some() => {
                self.kernel.push(k.to_string())
            }
            _ => {
                return Err(format!(
                    "unknown mount option '{opt}' (see `strata mount --help` for the list)"
                ))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_form_with_empty_options() {
        let o =
            MountOptions::parse(&["lowerdir=/a:/b\\:c,,upperdir=/u,workdir=/w,volatile"]).unwrap();
        assert_eq!(
            o.lowerdirs,
            vec![PathBuf::from("/a"), PathBuf::from("/b:c")]
        );
        assert_eq!(o.upperdir, Some(PathBuf::from("/u")));
        assert!(o.no_fsync);
    }

    #[test]
    fn errors_quoting_the_option_stay_one_line() {
        for bad in [
            "lowerdir=/a,bogus\nsecond line",
            "lowerdir=/a,timeout=1\n2",
            "lowerdir=/a,uidmapping=\x1b[31m:0:1",
        ] {
            let e = MountOptions::parse(&[bad]).unwrap_err();
            assert!(!e.chars().any(char::is_control), "{e:?}");
            assert!(e.contains("\\n") || e.contains("\\u{1b}"), "{e:?}");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(MountOptions::parse(&["upperdir=/u"])
            .unwrap_err()
            .contains("lowerdir"));
        assert!(MountOptions::parse(&["lowerdir=/a,upperdir=/u"])
            .unwrap_err()
            .contains("workdir"));
        assert!(MountOptions::parse(&["lowerdir=/a,bogus"])
            .unwrap_err()
            .contains("bogus"));
        assert!(MountOptions::parse(&["lowerdir=/a,timeout=x"]).is_err());
    }

    #[test]
    fn quoted_values_keep_their_commas() {
        let o = MountOptions::parse(&[
            "lowerdir=/a,context=\"system_u:object_r:container_file_t:s0:c1,c2\",noxattrs=1,\
             fscontext=\"a,b\",defcontext=\"c,d\",rootcontext=\"e,f\",fast_ino_check=1",
        ])
        .unwrap();
        assert!(o.no_xattrs);
        assert_eq!(o.lowerdirs, vec![PathBuf::from("/a")]);
        let o = MountOptions::parse(&["lowerdir=\"/x,y\""]).unwrap();
        assert_eq!(o.lowerdirs, vec![PathBuf::from("/x,y")]);
        assert!(
            !MountOptions::parse(&["lowerdir=/a,noxattrs=0"])
                .unwrap()
                .no_xattrs
        );
    }
}
