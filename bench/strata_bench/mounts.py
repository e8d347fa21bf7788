"""The union filesystems under test (strata, fuse-overlayfs, kernel overlayfs), mounting
them, finding their daemons, and unmounting everything on exit, Ctrl-C or error."""
import atexit
import contextlib
import os
import shutil
import signal
import time

from .sysutil import CommandError, log, rmtree, sh

_active = []  # mountpoints this process mounted and has not unmounted yet
# How long unmount waits for a FUSE daemon to exit (fuse-overlayfs lingers ~2 s after
# umount); --quick shortens it, a full run waits so daemons never overlap measurements.
DAEMON_EXIT_WAIT = 5.0
MOUNT_TIMEOUT = 20  # a mount program must have mounted and exited by then


def _unescape(s):
    return (s.replace("\\040", " ").replace("\\011", "\t")
            .replace("\\012", "\n").replace("\\134", "\\"))


def mountpoints():
    with open("/proc/self/mountinfo") as f:
        return [_unescape(line.split()[4]) for line in f]


def is_mounted(path):
    return os.path.abspath(path) in mountpoints()


def unmount(mnt):
    """umount MNT, retry on EBUSY, umount -l as a last resort; waits for a FUSE daemon to go."""
    mnt = os.path.abspath(mnt)
    pid = daemon_pid(mnt)
    for attempt in range(6):
        if not is_mounted(mnt):
            break
        flags = ["-l"] if attempt == 5 else []
        p = sh(["umount", *flags, mnt], check=False, timeout=120)
        if p.returncode != 0:
            time.sleep(0.2 * (attempt + 1))
    if mnt in _active:
        _active.remove(mnt)
    if pid:  # let the daemon exit so it does not compete with the next measurement
        deadline = time.time() + DAEMON_EXIT_WAIT
        while os.path.exists(f"/proc/{pid}") and time.time() < deadline:
            time.sleep(0.02)
    if is_mounted(mnt):
        raise CommandError(f"could not unmount {mnt}")


def cleanup_all():
    for mnt in reversed(list(_active)):
        try:
            unmount(mnt)
        except Exception as e:  # noqa: BLE001 - best effort at exit
            log(f"cleanup: {mnt}: {e}")


def cleanup_stale(root):
    """Unmount leftovers under root from an earlier run that was killed."""
    root = os.path.abspath(root) + "/"
    for mnt in sorted((m for m in mountpoints() if m.startswith(root)), key=len, reverse=True):
        log(f"stale mount {mnt}")
        _active.append(mnt)
        unmount(mnt)


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def install_cleanup_handlers():
    atexit.register(cleanup_all)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)


def daemon_pid(mnt):
    """Pid of the process whose command line names the mountpoint (a FUSE daemon), or None."""
    mnt = os.path.abspath(mnt)
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if any(a.rstrip(b"/") == mnt.encode() for a in args[1:]):
            return int(d)
    return None


def vm_kib(pid, field="VmHWM"):
    """VmHWM (peak RSS) or VmRSS of pid in KiB, None if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _opts(lowers, upper, work):
    esc = [lo.replace(":", "\\:") for lo in lowers]
    o = "lowerdir=" + ":".join(esc)
    if upper:
        o += f",upperdir={upper},workdir={work}"
    return o


class Peer:
    """One union filesystem implementation."""
    name = "?"
    fuse = False

    def mount_argv(self, opts, mnt, trace=None):
        raise NotImplementedError

    def mount(self, lowers, upper, work, mnt, trace=None, extra=None):
        for d in (upper, work, mnt):
            if d:
                os.makedirs(d, exist_ok=True)
        mnt = os.path.abspath(mnt)
        try:
            try:
                opts = _opts(lowers, upper, work) + (f",{extra}" if extra else "")
                sh(self.mount_argv(opts, mnt, trace),
                   timeout=MOUNT_TIMEOUT, daemon=True)
            except CommandError as e:
                if is_mounted(mnt) and "timed out" in str(e):
                    raise CommandError(f"mounted, but the program did not exit within "
                                       f"{MOUNT_TIMEOUT} s (the mount_program form must "
                                       f"daemonize and exit 0 once mounted)") from e
                raise
            for _ in range(200):
                if is_mounted(mnt):
                    break
                time.sleep(0.025)
            else:
                raise CommandError(f"{self.name}: exited 0 but {mnt} is not mounted")
        finally:
            if is_mounted(mnt):
                _active.append(mnt)  # mounted, even if the program then failed: unmount later
        if not is_mounted(mnt):
            raise CommandError(f"{self.name}: {mnt} is not mounted")

    @contextlib.contextmanager
    def mounted(self, lowers, upper, work, mnt, trace=None, extra=None):
        self.mount(lowers, upper, work, mnt, trace, extra)
        try:
            yield os.path.abspath(mnt)
        finally:
            unmount(mnt)


class FuseProgram(Peer):
    """A fuse-overlayfs-compatible program: PROG -o lowerdir=..,upperdir=..,workdir=.. MNT."""
    fuse = True

    def __init__(self, name, binary):
        self.name = name
        self.binary = binary

    def mount_argv(self, opts, mnt, trace=None):
        if trace:  # only strata has tracing: `strata mount --trace FILE -o OPTS MNT`
            return [self.binary, "mount", "--trace", trace, "-o", opts, mnt]
        return [self.binary, "-o", opts, mnt]


class KernelOverlay(Peer):
    name = "overlayfs"

    def mount_argv(self, opts, mnt, trace=None):
        return ["mount", "-t", "overlay", "overlay", "-o", opts, mnt]


def union_peers(strata_bin):
    """The three filesystems, strata first. strata_bin None -> strata left out."""
    peers = []
    if strata_bin:
        peers.append(FuseProgram("strata", strata_bin))
    peers.append(FuseProgram("fuse-overlayfs", "/usr/bin/fuse-overlayfs"))
    peers.append(KernelOverlay())
    return peers


def probe(peer, scratch):
    """Mount a one-file union and read it back; returns None if it works, else the error."""
    shutil.rmtree(scratch, ignore_errors=True)
    lower = os.path.join(scratch, "lower")
    os.makedirs(lower)
    with open(os.path.join(lower, "hello"), "w") as f:
        f.write("hello\n")
    try:
        with peer.mounted([lower], f"{scratch}/upper", f"{scratch}/work", f"{scratch}/mnt") as m:
            with open(os.path.join(m, "hello")) as f:
                if f.read() != "hello\n":
                    return "read back wrong content"
            with open(os.path.join(m, "new"), "w") as f:
                f.write("x")
        return None
    except (CommandError, OSError) as e:
        cleanup_all()
        return str(e)
    finally:
        rmtree(scratch)
