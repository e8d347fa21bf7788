//! A RUN step's output as docker shows it: on stderr (stdout stays for the image id), and
//! nothing with `-q`. Done by pointing this process's stdout at its stderr (or at
//! /dev/null) while the step runs, with no thread: the step's supervisor forks the
//! container's init, which must happen while the process is single-threaded.

use std::io::Write;
use std::os::fd::OwnedFd;

use crate::util::{Ctx, Result};

/// While alive, stdout goes to stderr (both to /dev/null when quiet); dropping it puts
/// them back.
pub struct StepOutput {
    saved: Option<(OwnedFd, OwnedFd)>,
}

impl StepOutput {
    /// Redirect stdout (and with `quiet` stderr too) for one step.
    pub fn start(quiet: bool) -> Result<StepOutput> {
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        let out = nix::unistd::dup(std::io::stdout()).ctx(|| "cannot save stdout")?;
        let err = nix::unistd::dup(std::io::stderr()).ctx(|| "cannot save stderr")?;
        let guard = StepOutput {
            saved: Some((out, err)),
        };
        if quiet {
            let null = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .ctx(|| "cannot open /dev/null")?;
            nix::unistd::dup2_stdout(&null).ctx(|| "cannot redirect stdout")?;
            nix::unistd::dup2_stderr(&null).ctx(|| "cannot redirect stderr")?;
        } else {
            nix::unistd::dup2_stdout(std::io::stderr()).ctx(|| "cannot redirect stdout")?;
        }
        Ok(guard)
    }
}

impl Drop for StepOutput {
    fn drop(&mut self) {
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        if let Some((out, err)) = self.saved.take() {
            let _ = nix::unistd::dup2_stdout(&out);
            let _ = nix::unistd::dup2_stderr(&err);
        }
    }
}
