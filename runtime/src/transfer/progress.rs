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
        // Added to the set before it is styled: a bar draws itself on its own target
        // (stderr) as soon as it is styled, and that first frame would stay on screen as a
        // duplicate line stuck at 0.
        let pb = m.add(ProgressBar::with_draw_target(
            total,
            ProgressDrawTarget::hidden(),
        ));
        pb.set_style(style(total.is_some()));
        pb.set_prefix(label.to_string());
        Bar(Some(pb))
    }
}

/// Byte counts in decimal units (kB, MB), as the summaries print them (util::human_size)
/// and as docker does.
fn style(sized: bool) -> ProgressStyle {
    let template = if sized {
        "{prefix:<14} {msg:<12} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec}"
    } else {
        "{prefix:<14} {msg:<12} {spinner} {decimal_bytes} {decimal_bytes_per_sec}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
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
    /// Start a new phase of this blob ("compressing", then "pushing"): `msg`, a total of
    /// `len` bytes, the count and the rate from zero.
    pub fn phase(&self, msg: &str, len: u64) {
        if let Some(b) = &self.0 {
            b.reset();
            b.set_length(len);
            b.set_style(style(true));
            b.set_message(msg.to_string());
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
