//! Progress bars for long transfers: one line per layer with bytes, total and rate, drawn on
//! a terminal only (never when stdout or stderr is redirected, nor with `-q`).

use std::io::{IsTerminal, Read};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The set of bars of one command.
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars on stderr when both stdout and stderr are terminals and not `quiet`.
    pub fn new(quiet: bool) -> Progress {
        let on = !quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        Progress {
            multi: on.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// No bars at all.
    pub fn hidden() -> Progress {
        Progress { multi: None }
    }

    /// A bar for one blob; `total` in bytes when known.
    pub fn bar(&self, label: &str, total: Option<u64>) -> Bar {
        let Some(m) = &self.multi else {
            return Bar(None);
        };
        let pb = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::new_spinner(),
        };
        let template = if total.is_some() {
            "{prefix:<14} {msg:<12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}"
        } else {
            "{prefix:<14} {msg:<12} {spinner} {bytes} {binary_bytes_per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_prefix(label.to_string());
        Bar(Some(m.add(pb)))
    }
}

/// One progress line (or nothing when bars are off).
#[derive(Clone)]
pub struct Bar(Option<ProgressBar>);

impl Bar {
    /// Say what is happening to this blob ("downloading", "exists", ...).
    pub fn message(&self, msg: &str) {
        if let Some(b) = &self.0 {
            b.set_message(msg.to_string());
        }
    }
    /// Count `n` more bytes.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
    /// Stop the bar, leaving it on screen with a final word.
    pub fn finish(&self, msg: &str) {
        if let Some(b) = &self.0 {
            if let Some(len) = b.length() {
                b.set_position(len);
            }
            b.finish_with_message(msg.to_string());
        }
    }
    /// Set the total once it is known.
    pub fn set_length(&self, len: u64) {
        if let Some(b) = &self.0 {
            b.set_length(len);
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix:<14} {msg:<12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
        }
    }
    /// Back to zero (a request sent again).
    pub fn reset(&self) {
        if let Some(b) = &self.0 {
            b.set_position(0);
        }
    }
    /// Wrap a reader so that what is read moves the bar.
    pub fn reader<R: Read>(&self, inner: R) -> BarReader<R> {
        BarReader {
            inner,
            bar: self.clone(),
        }
    }
}

/// A reader that moves a bar.
pub struct BarReader<R> {
    inner: R,
    bar: Bar,
}

impl<R: Read> Read for BarReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}
