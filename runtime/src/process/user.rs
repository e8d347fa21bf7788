//! Resolving USER[:GROUP] against the container's /etc/passwd and /etc/group.

use std::path::Path;

use crate::err;
use crate::util::Result;

/// Who the container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary gids.
    pub groups: Vec<u32>,
    /// Home directory (for $HOME).
    pub home: String,
}

fn read_db(root: &Path, file: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(root.join(file))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect()
}

/// Resolve `spec` ("", "name", "1000", "name:group", "1000:1000") inside `root`.
pub fn resolve(root: &Path, spec: &str) -> Result<ExecUser> {
    let passwd = read_db(root, "etc/passwd");
    let group = read_db(root, "etc/group");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entry = passwd
        .iter()
        .find(|f| f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u));
    let (uid, mut gid, home, name) = match (entry, u.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse()
                .map_err(|_| err!("bad uid in /etc/passwd for {u}"))?,
            f[3].parse()
                .map_err(|_| err!("bad gid in /etc/passwd for {u}"))?,
            f.get(5).cloned().unwrap_or_else(|| "/".into()),
            Some(f[0].clone()),
        ),
        (None, Ok(n)) => (n, 0, "/".to_string(), None),
        (None, Err(_)) => {
            return Err(err!(
                "unable to find user {u}: no matching entries in the image's /etc/passwd"
            ))
        }
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    err!("unable to find group {g}: no matching entries in the image's /etc/group")
                })?,
        };
    }
    let mut groups = vec![gid];
    if let Some(name) = name {
        for f in &group {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(n) = f[2].parse::<u32>() {
                    if !groups.contains(&n) {
                        groups.push(n);
                    }
                }
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        groups,
        home,
    })
}

/// A group name or number inside `root` (`--group-add`).
pub fn resolve_group(root: &Path, g: &str) -> Result<u32> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    read_db(root, "etc/group")
        .iter()
        .find(|f| f[0] == g)
        .and_then(|f| f[2].parse().ok())
        .ok_or_else(|| {
            err!("unable to find group {g}: no matching entries in the image's /etc/group")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_and_numbers() {
        let dir = std::env::temp_dir().join(format!("strata-user-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:100:Bob:/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("etc/group"),
            "root:x:0:\nusers:x:100:\nwheel:x:10:bob\n",
        )
        .unwrap();
        let bob = resolve(&dir, "bob").unwrap();
        assert_eq!(
            (bob.uid, bob.gid, bob.groups.clone(), bob.home.as_str()),
            (1000, 100, vec![100, 10], "/home/bob")
        );
        assert_eq!(resolve(&dir, "").unwrap().uid, 0);
        assert_eq!(resolve(&dir, "4242:7").unwrap().gid, 7);
        assert_eq!(resolve(&dir, "bob:wheel").unwrap().gid, 10);
        assert!(resolve(&dir, "nobody").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
