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
