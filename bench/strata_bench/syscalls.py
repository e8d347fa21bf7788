"""Per-operation syscall counts of a FUSE daemon (issue 19): `strace -c -f -p PID` while a
command runs through its mount. Counts, not times: strace slows the daemon, so nothing
measured under it is ever timed."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

from .sysutil import log


def available():
    return shutil.which("strace") is not None


def _total(path):
    """The call count on strace -c's total line."""
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts and parts[-1] == "total":
                # % time, seconds, usecs/call, calls, [errors], total
                return int(parts[3])
    raise ValueError(f"no total line in {path}")


def count(pid, argv):
    """Syscalls the daemon `pid` (all its threads) makes while argv runs."""
    fd, out = tempfile.mkstemp(prefix="strata-bench-strace-")
    os.close(fd)
    try:
        log(f"$ strace -c -f -p {pid} -o {out}  # during: {' '.join(argv)}")
        tr = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", out],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached to every thread before the command starts
        try:
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=True, timeout=1800)
        finally:
            time.sleep(0.3)
            tr.send_signal(signal.SIGINT)
            tr.wait(timeout=60)
        return _total(out)
    finally:
        os.unlink(out)
