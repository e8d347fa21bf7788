//! docker's mount syntaxes: `-v SRC:DST[:ro]`, `-v /DST`, `--mount type=...,src=,dst=`,
//! `--tmpfs PATH[:opts]`, and the image's VOLUME paths, into bind mounts and tmpfs specs.

use std::collections::BTreeMap;

use crate::err;
use crate::spec::{Tmpfs, Volume};
use crate::store::Store;
use crate::util::{Ctx, Result};

/// What a container mounts, parsed and with its volumes created.
#[derive(Debug, Default)]
pub struct Mounts {
    /// Binds and volumes.
    pub volumes: Vec<Volume>,
    /// tmpfs mounts.
    pub tmpfs: Vec<Tmpfs>,
}

/// A container path must be absolute; `..` in it stays inside the root (secure_join).
fn check_target(t: &str, what: &str) -> Result<()> {
    if t.starts_with('/') {
        Ok(())
    } else {
        Err(err!(
            "invalid {what} {t:?}: the container path must be absolute"
        ))
    }
}

fn bind(src: &str, target: &str, readonly: bool) -> Result<Volume> {
    let source = std::fs::canonicalize(src)
        .ctx(|| format!("volume source {src} (it must exist on the host)"))?;
    Ok(Volume {
        source,
        target: target.to_string(),
        readonly,
        volume: None,
        anonymous: false,
    })
}

/// A named volume (created on first use) or, without a name, an anonymous one.
fn volume(store: &Store, name: Option<&str>, target: &str, readonly: bool) -> Result<Volume> {
    let v = crate::volume::create(store, name, BTreeMap::new(), name.is_none())?;
    Ok(Volume {
        source: v.mountpoint,
        target: target.to_string(),
        readonly,
        volume: Some(v.name),
        anonymous: name.is_none(),
    })
}

/// `-v`: `/host:/dst[:ro]` binds, `NAME:/dst[:ro]` a named volume, `/dst` an anonymous one.
fn parse_v(store: &Store, s: &str) -> Result<Volume> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [d] => (None, *d, "rw"),
        [s, d] => (Some(*s), *d, "rw"),
        [s, d, m] => (Some(*s), *d, *m),
        _ => {
            return Err(err!(
                "invalid volume {s:?}: use -v /host/path:/container/path[:ro], -v NAME:/path or -v /path"
            ))
        }
    };
    let mut readonly = false;
    for opt in mode.split(',') {
        match opt {
            "ro" => readonly = true,
            "rw" => readonly = false,
            // SELinux relabelling and propagation: nothing to do here.
            "z" | "Z" | "rprivate" | "private" => {}
            _ => return Err(err!("invalid volume mode {opt:?} in {s:?}: use ro or rw")),
        }
    }
    check_target(dst, "volume")?;
    match src {
        None => volume(store, None, dst, readonly),
        Some(p) if p.starts_with('/') || p.starts_with('.') => bind(p, dst, readonly),
        Some(name) => volume(store, Some(name), dst, readonly),
    }
}

/// docker's tmpfs options: `size=64m`, `mode=1777`, plus mount flags passed through.
fn tmpfs_options(opts: &str) -> Result<String> {
    let mut out = Vec::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        let ok = match o.split_once('=') {
            Some(("size", v)) => crate::container::parse_size(v).is_ok(),
            Some(("mode", v)) => u32::from_str_radix(v, 8).is_ok(),
            Some(("uid" | "gid" | "nr_inodes", v)) => v.parse::<u64>().is_ok(),
            Some(_) => false,
            None => matches!(
                o,
                "ro" | "rw"
                    | "exec"
                    | "noexec"
                    | "suid"
                    | "nosuid"
                    | "dev"
                    | "nodev"
                    | "atime"
                    | "noatime"
            ),
        };
        if !ok {
            return Err(err!(
                "invalid tmpfs option {o:?}: use size=N[kmg], mode=OCTAL, uid=, gid=, ro, noexec, nosuid, nodev"
            ));
        }
        out.push(o.to_string());
    }
    Ok(out.join(","))
}

/// `--tmpfs PATH[:opts]`.
fn parse_tmpfs(s: &str) -> Result<Tmpfs> {
    let (target, opts) = s.split_once(':').unwrap_or((s, ""));
    check_target(target, "--tmpfs")?;
    Ok(Tmpfs {
        target: target.to_string(),
        options: tmpfs_options(opts)?,
    })
}

/// `--mount type=bind|volume|tmpfs,src=..,dst=..,readonly,tmpfs-size=..,tmpfs-mode=..`.
fn parse_mount(store: &Store, s: &str, m: &mut Mounts) -> Result<()> {
    let (mut kind, mut src, mut dst, mut ro) = ("volume", None, None, false);
    let mut tmpfs = Vec::new();
    for kv in s.split(',') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "type" => kind = v,
            "src" | "source" => src = Some(v),
            "dst" | "target" | "destination" => dst = Some(v),
            "readonly" | "ro" => ro = matches!(v, "" | "true" | "1"),
            "tmpfs-size" => tmpfs.push(format!("size={v}")),
            "tmpfs-mode" => tmpfs.push(format!("mode={v}")),
            "bind-propagation" | "volume-nocopy" | "consistency" => {}
            _ => {
                return Err(err!(
                    "unknown --mount key {k:?} in {s:?}: use type, src, dst, readonly, tmpfs-size, tmpfs-mode"
                ))
            }
        }
    }
    let dst = dst.ok_or_else(|| err!("--mount {s:?} has no target: add dst=/path/in/container"))?;
    check_target(dst, "--mount target")?;
    match (kind, src) {
        ("bind", Some(p)) => m.volumes.push(bind(p, dst, ro)?),
        ("bind", None) => return Err(err!("--mount type=bind needs src=/host/path")),
        ("volume", name) => m.volumes.push(volume(store, name, dst, ro)?),
        ("tmpfs", None) => {
            if ro {
                tmpfs.push("ro".into());
            }
            m.tmpfs.push(Tmpfs {
                target: dst.to_string(),
                options: tmpfs_options(&tmpfs.join(","))?,
            })
        }
        ("tmpfs", Some(_)) => return Err(err!("--mount type=tmpfs takes no src")),
        (other, _) => {
            return Err(err!(
                "unsupported --mount type {other:?}: use bind, volume or tmpfs"
            ))
        }
    }
    Ok(())
}

/// Everything a container mounts: `-v`, `--mount` and `--tmpfs`, then an anonymous volume
/// for each image VOLUME no other mount covers. Check the specs before calling it: it
/// creates the volumes it names.
pub fn parse(
    store: &Store,
    volumes: &[String],
    mounts: &[String],
    tmpfs: &[String],
    image_volumes: &[String],
) -> Result<Mounts> {
    let mut m = Mounts::default();
    for t in tmpfs {
        m.tmpfs.push(parse_tmpfs(t)?);
    }
    for v in volumes {
        m.volumes.push(parse_v(store, v)?);
    }
    for s in mounts {
        parse_mount(store, s, &mut m)?;
    }
    for path in image_volumes {
        let p = path.trim_end_matches('/');
        let covered = m
            .volumes
            .iter()
            .any(|v| v.target.trim_end_matches('/') == p)
            || m.tmpfs.iter().any(|t| t.target.trim_end_matches('/') == p);
        if !covered && check_target(path, "image VOLUME").is_ok() {
            m.volumes.push(volume(store, None, path, false)?);
        }
    }
    Ok(m)
}
