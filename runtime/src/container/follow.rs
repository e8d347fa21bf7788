//! `strata logs [-f] [--tail N] [-t] [--since T]`: print a container's log (stdout records
//! to stdout, stderr records to stderr), and with `follow` keep printing while it runs.

use std::io::{Read, Write};
use std::time::Duration;

use crate::container::logfile::{parse_line, Record};
use crate::container::{self, Status};
use crate::err;
use crate::store::Store;
use crate::util::parse_rfc3339;
use crate::Result;

/// How long to wait for more output before looking at the log again; the supervisor writes
/// through a file, which has no way to wake a reader.
const POLL: Duration = Duration::from_millis(100);

/// What `logs` prints.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// -f: keep printing until the container stops.
    pub follow: bool,
    /// --tail N: only the last N lines (None: all).
    pub tail: Option<usize>,
    /// -t: prefix each line with its time.
    pub timestamps: bool,
    /// --since: only lines from this time on (seconds since the epoch).
    pub since: Option<i64>,
    /// --until: only lines up to this time (seconds since the epoch); -f stops there.
    pub until: Option<i64>,
}

/// `--tail N|all`.
pub fn parse_tail(s: &str) -> Result<Option<usize>> {
    match s {
        "all" | "-1" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .map_err(|_| err!("invalid --tail {s:?}: use a number of lines or all")),
    }
}

/// `--since`: RFC 3339 (2026-01-02T15:04:05Z), a unix time (1700000000[.5]), or a
/// duration back from `now` (10m, 1h30m, 45s).
pub fn parse_since(s: &str, now: i64) -> Result<i64> {
    if let Some(t) = parse_rfc3339(s) {
        return Ok(t);
    }
    if let Ok(f) = s.parse::<f64>() {
        return Ok(f as i64);
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut any = false;
    let bad =
        || err!("invalid --since {s:?}: use an RFC 3339 time, a unix time or a duration like 10m");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => return Err(bad()),
        };
        total += num.parse::<f64>().map_err(|_| bad())? * unit;
        num.clear();
        any = true;
    }
    if !any || !num.is_empty() {
        return Err(bad());
    }
    Ok(now - total as i64)
}

/// Where records go: stdout records to `out`, stderr records to `err`.
struct Sink<'a, O: Write, E: Write> {
    out: &'a mut O,
    err: &'a mut E,
    timestamps: bool,
    since: Option<i64>,
    until: Option<i64>,
}

impl<O: Write, E: Write> Sink<'_, O, E> {
    /// Print one record; false once the reader of stdout has left.
    fn print(&mut self, r: &Record) -> bool {
        let t = parse_rfc3339(&r.time);
        if t.is_some_and(|t| self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t > u))
        {
            return true;
        }
        let text = if self.timestamps && !r.time.is_empty() {
            format!("{} {}", r.time, r.log)
        } else {
            r.log.clone()
        };
        if r.stream == "stderr" {
            let _ = self.err.write_all(text.as_bytes());
            true
        } else {
            self.out.write_all(text.as_bytes()).is_ok()
        }
    }

    fn flush(&mut self) {
        let _ = self.out.flush();
        let _ = self.err.flush();
    }
}

/// Complete lines at the front of `buf`, removed from it.
fn take_lines(buf: &mut Vec<u8>) -> Vec<Record> {
    let Some(last) = buf.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    let rest = buf.split_off(last + 1);
    let done = std::mem::replace(buf, rest);
    done.split_inclusive(|b| *b == b'\n')
        .map(parse_line)
        .collect()
}

/// Print the log of container `id`. A container that never wrote a log prints nothing; a
/// closed `out` (a pipe whose reader left) ends the copy without an error.
pub fn copy_log(
    store: &Store,
    id: &str,
    o: &LogOptions,
    out: &mut impl Write,
    err_out: &mut impl Write,
) -> Result<()> {
    let Some(mut f) = crate::container::logs::open_log(store, id)? else {
        return Ok(());
    };
    let mut sink = Sink {
        out,
        err: err_out,
        timestamps: o.timestamps,
        since: o.since,
        until: o.until,
    };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| err!("cannot read the log: {e}"))?;
    let mut records = take_lines(&mut buf);
    if let Some(n) = o.tail {
        let skip = records.len().saturating_sub(n);
        records.drain(..skip);
    }
    for r in &records {
        if !sink.print(r) {
            return Ok(());
        }
    }
    sink.flush();
    if !o.follow {
        return Ok(());
    }
    let mut chunk = vec![0u8; 65536];
    loop {
        let n = f
            .read(&mut chunk)
            .map_err(|e| err!("cannot read the log: {e}"))?;
        if n > 0 {
            buf.extend_from_slice(&chunk[..n]);
            for r in take_lines(&mut buf) {
                if !sink.print(&r) {
                    return Ok(());
                }
            }
            continue;
        }
        sink.flush();
        if o.until.is_some_and(|u| crate::util::now_secs() > u) {
            return Ok(());
        }
        let st = container::load_state(store, id)?;
        if st.status != Status::Running && !container::supervisor_alive(&st) {
            // One last read after the exit was recorded.
            let _ = f.read_to_end(&mut buf);
            buf.push(b'\n');
            for r in take_lines(&mut buf).iter().filter(|r| r.log != "\n") {
                sink.print(r);
            }
            sink.flush();
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_docker_forms() {
        assert_eq!(parse_since("10m", 1000).unwrap(), 400);
        assert_eq!(parse_since("1h1s", 5000).unwrap(), 1399);
        assert_eq!(parse_since("1700000000", 0).unwrap(), 1_700_000_000);
        assert_eq!(parse_since("1970-01-01T00:01:40Z", 0).unwrap(), 100);
        assert!(parse_since("soon", 0).is_err());
        assert_eq!(parse_tail("all").unwrap(), None);
        assert_eq!(parse_tail("3").unwrap(), Some(3));
    }
}
