//! Printing to stdout that ends the command quietly when the reader has gone
//! (`strata images | head -1`), as every Unix tool does.
//!
//! SIGPIPE stays ignored (Rust's default) instead of being reset to its default action:
//! the mount daemon and container supervisors are this same binary, and a daemon must
//! never die of SIGPIPE on a FUSE, control-socket or log descriptor. Each write to stdout
//! goes through [`write_or_exit`], which maps EPIPE to a quiet exit instead.

use std::io::Write;

/// The status of a command whose stdout reader went away: 128 + SIGPIPE, what a shell
/// reports for a tool killed by SIGPIPE.
pub const BROKEN_PIPE_STATUS: i32 = 141;

/// Write formatted text to stdout; a closed pipe ends the process quietly with
/// [`BROKEN_PIPE_STATUS`], any other write error is reported once and ends it too.
pub fn write_or_exit(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        exit_on_write_error(&e);
    }
}

/// End the process for an error writing stdout: quietly for a closed pipe.
pub fn exit_on_write_error(e: &std::io::Error) -> ! {
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        eprintln!("strata: cannot write to stdout: {e}");
        std::process::exit(1);
    }
    std::process::exit(BROKEN_PIPE_STATUS)
}

/// True when `e` (an error message from a library call) is a write to a closed stdout.
pub fn is_broken_pipe(e: &str) -> bool {
    e.ends_with("Broken pipe (os error 32)")
}

/// `println!` through [`write_or_exit`].
macro_rules! outln {
    () => { $crate::output::write_or_exit(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::output::write_or_exit(format_args!("{}\n", format_args!($($arg)*)))
    };
}
