//! Small helpers: the error type, atomic writes, hashing, ids and timestamps.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// A one-line, user-facing error: what failed and what to do about it. The crate's
/// boundary type (`thiserror`); built with [`err!`](crate::err) or [`Ctx::ctx`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Build an [`Error`] from a format string.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => { $crate::util::Error(format!($($arg)*)) };
}

/// Attach a description of what was being done to any displayable error.
pub trait Ctx<T> {
    /// Map the error to "`what`: cause".
    fn ctx<S: fmt::Display>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: fmt::Display> Ctx<T> for std::result::Result<T, E> {
    fn ctx<S: fmt::Display>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {e}", what())))
    }
}

/// Write `data` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// fsync of the directory. Readers see the old or the new content, never a mix.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| {
        f.write_all(data)
            .map_err(|e| err!("cannot write {}: {e}", path.display()))
    })
}

/// Files and directories to remove if the process is interrupted (see crate::interrupt,
/// which removes them; kept here, below every writer that registers one).
static PENDING: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// A path removed on interrupt until this is dropped (the path was renamed into place or
/// removed by its owner).
pub struct Pending(PathBuf);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Ok(mut v) = PENDING.lock() {
            if let Some(i) = v.iter().position(|p| *p == self.0) {
                v.swap_remove(i);
            }
        }
    }
}

/// Remove `path` if the process is interrupted before the returned guard is dropped.
pub fn remove_on_interrupt(path: &Path) -> Pending {
    if let Ok(mut v) = PENDING.lock() {
        v.push(path.to_path_buf());
    }
    Pending(path.to_path_buf())
}

/// The paths registered with [`remove_on_interrupt`] and not yet released.
pub(crate) fn pending_paths() -> Vec<PathBuf> {
    PENDING.lock().map(|v| v.clone()).unwrap_or_default()
}

/// [`write_atomic`] for content streamed by `fill` into the temporary file (a tar too large
/// to hold in memory). An error of `fill` is returned as it is, and no partial file is left.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| err!("{}: no parent directory", path.display()))?;
    // A bare file name (`-o out.tar`) lives in the current directory.
    let dir = match dir.as_os_str().is_empty() {
        true => Path::new("."),
        false => dir,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let _pending = remove_on_interrupt(&tmp);
    let io = |e: std::io::Error| err!("cannot write {}: {e}", path.display());
    let write = || -> Result<()> {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        fill(&mut f)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Serialize `value` as pretty JSON and write it atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let data = serde_json::to_vec_pretty(value).ctx(|| format!("encoding {}", path.display()))?;
    write_atomic(path, &data)
}

/// Read and parse a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let data = std::fs::read(path).ctx(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&data).ctx(|| {
        format!(
            "corrupt metadata {} (restore the file, or remove the item with `strata rm -f` / `strata rmi -f`)",
            path.display()
        )
    })
}

/// Lowercase hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 random bytes as 64 hex digits (container ids).
pub fn random_id() -> Result<String> {
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .ctx(|| "cannot read /dev/urandom")?;
    Ok(hex(&buf))
}

/// Seconds since the epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC timestamp for `secs` since the epoch.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parse the seconds back out of an RFC 3339 UTC timestamp written by [`rfc3339`].
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// "3 minutes ago" style age of a timestamp.
pub fn ago(secs: i64) -> String {
    let d = (now_secs() - secs).max(0);
    let (n, unit) = match d {
        0..=1 => return "Less than a second ago".into(),
        2..=59 => (d, "second"),
        60..=3599 => (d / 60, "minute"),
        3600..=86_399 => (d / 3600, "hour"),
        _ => (d / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// Human size (docker style: 4.2MB).
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[i]
    }
}

/// A reader that hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    /// Bytes read so far.
    pub count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wrap `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// Hex digest of everything read.
    pub fn finish(self) -> String {
        hex(&self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Start time (field 22 of /proc/PID/stat) of a live process; None once it is a zombie
/// (killed but not yet reaped by whoever inherited it).
pub fn pid_start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let mut fields = s.get(s.rfind(')')? + 2..)?.split(' ');
    if matches!(fields.next(), Some("Z" | "X") | None) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_with_leaves_old_content_or_new() {
        let dir = std::env::temp_dir().join(format!("strata-util-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("out");
        std::fs::write(&target, "old").unwrap();
        let r = write_atomic_with(&target, |f| {
            f.write_all(b"partial").unwrap();
            Err(err!("the producer failed"))
        });
        assert_eq!(r, Err(err!("the producer failed")));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
        write_atomic_with(&target, |f| f.write_all(b"new").map_err(|e| err!("{e}"))).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["out"], "no temporary file left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rfc3339_round_trips() {
        for s in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(s)), Some(s));
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn sizes_are_docker_like() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_200_000), "4.2MB");
    }
}
