//! `strata logs [-f]`: copy a detached container's log, and with `follow` keep copying while
//! the container runs.

use std::io::{Read, Write};
use std::time::Duration;

use crate::container::{self, Status};
use crate::err;
use crate::store::Store;
use crate::Result;

/// How long to wait for more output before looking at the log again; the container writes
/// through a file, which has no way to wake a reader.
const POLL: Duration = Duration::from_millis(100);

/// Copy the log of container `id` to `out`. With `follow`, keep copying until the container is
/// no longer running, then copy what it wrote last. A container that never wrote a log copies
/// nothing; a closed `out` (a pipe whose reader left) ends the copy without an error.
pub fn copy_log(store: &Store, id: &str, follow: bool, out: &mut impl Write) -> Result<()> {
    let Some(mut f) = crate::container::logs::open_log(store, id)? else {
        return Ok(());
    };
    let mut buf = vec![0u8; 65536];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| err!("cannot read the log: {e}"))?;
        if n > 0 {
            if out.write_all(&buf[..n]).is_err() {
                return Ok(());
            }
            continue;
        }
        let _ = out.flush();
        if !follow {
            return Ok(());
        }
        let st = container::load_state(store, id)?;
        if st.status != Status::Running {
            // One last read after the exit was recorded.
            let mut rest = Vec::new();
            let _ = f.read_to_end(&mut rest);
            let _ = out.write_all(&rest);
            let _ = out.flush();
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}
