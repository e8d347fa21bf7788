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

    fn emit(&mut self, upto: usize) {
        let text: Vec<u8> = self.pending.drain(..upto).collect();
        let rec = Record {
            log: String::from_utf8_lossy(&text).into_owned(),
            stream: self.stream.to_string(),
            time: now_nanos(),
        };
        if let Ok(mut line) = serde_json::to_vec(&rec) {
            line.push(b'\n');
            if let Ok(mut f) = self.log.lock() {
                let _ = f.write_all(&line);
            }
        }
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(t) = &mut self.tee {
            if t.write_all(buf).and_then(|()| t.flush()).is_err() {
                self.tee = None;
            }
        }
        self.pending.extend_from_slice(buf);
        while let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
            self.emit(i + 1);
        }
        if self.pending.len() >= MAX_LINE {
            self.emit(self.pending.len());
        }
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
            self.emit(self.pending.len());
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
