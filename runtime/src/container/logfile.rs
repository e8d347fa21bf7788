//! The container log in docker's json-file format: one JSON object a line,
//! `{"log":"text\n","stream":"stdout"|"stderr","time":"RFC 3339 with nanoseconds"}`, written
//! by the supervisor for foreground and detached containers alike, so that `logs` can keep
//! the streams apart, print timestamps and select by time or count.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::util::rfc3339;

/// A partial line longer than this is written out as a record of its own (docker: 16 KiB).
const MAX_LINE: usize = 16 * 1024;

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The text, with its newline.
    pub log: String,
    /// "stdout" or "stderr".
    pub stream: String,
    /// RFC 3339 UTC with nanoseconds.
    pub time: String,
}

/// Now as RFC 3339 with nanoseconds, docker's log time.
pub fn now_nanos() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let base = rfc3339(d.as_secs() as i64);
    format!("{}.{:09}Z", base.trim_end_matches('Z'), d.subsec_nanos())
}

/// The log file, shared by the writers of both streams.
pub type Shared = Arc<Mutex<File>>;

/// A writer that cuts what a stream writes into records appended to the log, and copies
/// it to `tee` (the user's terminal or pipe, in the foreground). Errors of either are
/// ignored: a reader that left must not stop the container's output from being logged.
pub struct LogWriter {
    log: Shared,
    stream: &'static str,
    pending: Vec<u8>,
    tee: Option<Box<dyn Write + Send>>,
}

impl LogWriter {
    /// A writer for `stream` ("stdout" or "stderr").
    pub fn new(log: Shared, stream: &'static str, tee: Option<Box<dyn Write + Send>>) -> Self {
        LogWriter {
            log,
            stream,
            pending: Vec::new(),
            tee,
        }
    }

    /// Append the record of `line` to `out` (docker's field order: log, stream, time).
    fn encode(&self, line: &[u8], time: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"log\":\"");
        match std::str::from_utf8(line) {
            Ok(text) => escape_into(text, out),
            Err(_) => escape_into(&String::from_utf8_lossy(line), out),
        }
        out.extend_from_slice(b"\",\"stream\":\"");
        out.extend_from_slice(self.stream.as_bytes());
        out.extend_from_slice(b"\",\"time\":\"");
        out.extend_from_slice(time.as_bytes());
        out.extend_from_slice(b"\"}\n");
    }

    /// Append the records of `out` to the log in one write.
    fn append(&self, out: &[u8]) {
        if out.is_empty() {
            return;
        }
        if let Ok(mut f) = self.log.lock() {
            let _ = f.write_all(out);
        }
    }
}

/// JSON string escaping of `text` (quotes, backslashes, control characters); runs of
/// plain bytes are copied whole.
fn escape_into(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    // Most lines need nothing escaped but their newline.
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if !body.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(body);
        if body.len() < bytes.len() {
            out.extend_from_slice(b"\\n");
        }
        return;
    }
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(plain..i).unwrap_or_default());
        if esc.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(esc);
        }
        plain = i + 1;
    }
    out.extend_from_slice(bytes.get(plain..).unwrap_or_default());
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(t) = &mut self.tee {
            if t.write_all(buf).and_then(|()| t.flush()).is_err() {
                self.tee = None;
            }
        }
        // One time and one write to the log per chunk read from the container.
        let time = now_nanos();
        let mut out = Vec::with_capacity(buf.len() + buf.len() / 4 + 64);
        let mut rest = buf;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(i + 1);
            if self.pending.is_empty() {
                self.encode(line, &time, &mut out);
            } else {
                let mut whole = std::mem::take(&mut self.pending);
                whole.extend_from_slice(line);
                self.encode(&whole, &time, &mut out);
            }
            rest = tail;
        }
        self.pending.extend_from_slice(rest);
        if self.pending.len() >= MAX_LINE {
            let whole = std::mem::take(&mut self.pending);
            self.encode(&whole, &time, &mut out);
        }
        self.append(&out);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        // The stream's last words, without a newline.
        if !self.pending.is_empty() {
            let whole = std::mem::take(&mut self.pending);
            let mut out = Vec::new();
            self.encode(&whole, &now_nanos(), &mut out);
            self.append(&out);
        }
    }
}

/// One line of the file: a record, or (a log written by an older strata) raw output.
pub fn parse_line(line: &[u8]) -> Record {
    serde_json::from_slice(line).unwrap_or_else(|_| Record {
        log: String::from_utf8_lossy(line).into_owned(),
        stream: "stdout".into(),
        time: String::new(),
    })
}

/// Copy a container's stdout and stderr pipes into their writers from one thread, in the
/// order the data arrives (two threads would let a later line of one stream be logged
/// before an earlier one of the other). Ends when both pipes are at EOF.
pub fn relay_pair(
    out: std::os::fd::OwnedFd,
    err: std::os::fd::OwnedFd,
    w_out: LogWriter,
    w_err: LogWriter,
) -> std::thread::JoinHandle<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::Read;
    use std::os::fd::AsFd;
    std::thread::spawn(move || {
        let mut ends: Vec<(File, LogWriter)> =
            vec![(File::from(out), w_out), (File::from(err), w_err)];
        let mut buf = [0u8; 8192];
        while !ends.is_empty() {
            let ready: Vec<bool> = {
                let mut fds: Vec<PollFd<'_>> = ends
                    .iter()
                    .map(|(f, _)| PollFd::new(f.as_fd(), PollFlags::POLLIN))
                    .collect();
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => fds
                        .iter()
                        .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                        .collect(),
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return,
                }
            };
            let mut idx = 0;
            ends.retain_mut(|(f, w)| {
                let keep = if ready[idx] {
                    match f.read(&mut buf) {
                        Ok(0) | Err(_) => false,
                        Ok(n) => {
                            let _ = w.write_all(&buf[..n]);
                            true
                        }
                    }
                } else {
                    true
                };
                idx += 1;
                keep
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_json() {
        let mut out = Vec::new();
        escape_into("a\"b\\c\n\t\u{1}é", &mut out);
        let json = format!("\"{}\"", String::from_utf8(out).unwrap());
        let back: String = serde_json::from_str(&json).unwrap();
        assert_eq!(back, "a\"b\\c\n\t\u{1}é");
    }
}
