//! A RUN step's output as docker's plain progress shows it: on stderr (stdout stays for
//! the image id), each line prefixed with the step number and the seconds since the step
//! began (`#3 0.512 Setting up hello ...`); nothing with `-q`.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::time::Instant;

use crate::util::{Ctx, Result};

/// While alive, this process's stdout and stderr go through the relay; dropping it puts
/// them back and waits for the last line.
pub struct StepOutput {
    saved: Option<(OwnedFd, OwnedFd)>,
    done: std::sync::mpsc::Receiver<()>,
}

impl StepOutput {
    /// Redirect stdout and stderr for step `step` (discarded when `quiet`).
    pub fn start(step: usize, quiet: bool) -> Result<StepOutput> {
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        let out = nix::unistd::dup(std::io::stdout()).ctx(|| "cannot save stdout")?;
        let err = nix::unistd::dup(std::io::stderr()).ctx(|| "cannot save stderr")?;
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .ctx(|| "cannot create a pipe for the step's output")?;
        let to = nix::unistd::dup(&err).ctx(|| "cannot duplicate stderr")?;
        let t0 = Instant::now();
        let (tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut to = std::fs::File::from(to);
            for line in BufReader::new(std::fs::File::from(r)).split(b'\n') {
                let Ok(line) = line else { break };
                if quiet {
                    continue;
                }
                let mut l = format!("#{step} {:.3} ", t0.elapsed().as_secs_f64()).into_bytes();
                l.extend_from_slice(&line);
                l.push(b'\n');
                if to.write_all(&l).is_err() {
                    break;
                }
            }
            let _ = tx.send(());
        });
        nix::unistd::dup2_stdout(&w).ctx(|| "cannot redirect stdout")?;
        nix::unistd::dup2_stderr(&w).ctx(|| "cannot redirect stderr")?;
        drop(w);
        Ok(StepOutput {
            saved: Some((out, err)),
            done,
        })
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
        // The step's processes have exited, so the pipe ends soon; a stray holder of its
        // write end (a process the step left behind) must not hang the build: the relay
        // then goes on alone.
        let _ = self.done.recv_timeout(std::time::Duration::from_secs(2));
    }
}
