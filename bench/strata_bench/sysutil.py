"""Running commands, timing them, and reading facts about the machine."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

# Every command the harness runs is appended here (set by main); useful when a peer fails.
LOG_PATH = None
VERBOSE = False


class CommandError(RuntimeError):
    """A command exited non-zero; the message carries the tail of its stderr."""


_T0 = time.time()


def log(msg):
    if LOG_PATH:
        with open(LOG_PATH, "a") as f:
            f.write(f"[{time.time() - _T0:8.2f}] " + msg.rstrip("\n") + "\n")
    if VERBOSE:
        print(msg, file=sys.stderr)


def say(msg):
    """Progress line for the person running the bench (stderr, keeps stdout for the table)."""
    print(msg, file=sys.stderr, flush=True)
    log(msg)


def sh(argv, check=True, timeout=900, env=None, cwd=None, stdin=None, quiet=False,
       daemon=False):
    """Run argv (list) and return CompletedProcess with text output. daemon=True sends the
    output to a temp file instead of pipes: a daemonizing child that keeps the inherited
    stdout/stderr open must not make us wait for it."""
    log("$ " + " ".join(str(a) for a in argv))
    argv = [str(a) for a in argv]
    stdin = stdin if stdin is not None else subprocess.DEVNULL
    try:
        if daemon:
            with tempfile.TemporaryFile("w+") as out:
                rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                    env=env, cwd=cwd, stdin=stdin).returncode
                out.seek(0)
                p = subprocess.CompletedProcess(argv, rc, "", out.read())
        else:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                               cwd=cwd, stdin=stdin)
    except subprocess.TimeoutExpired as e:
        raise CommandError(f"timed out after {timeout}s: {' '.join(map(str, argv))}") from e
    except FileNotFoundError as e:
        raise CommandError(f"not found: {argv[0]}") from e
    if p.stdout and not quiet:
        log(p.stdout[-2000:])
    if p.stderr:
        log(p.stderr[-2000:])
    if check and p.returncode != 0:
        tail = (p.stderr or p.stdout or "").strip().splitlines()[-3:]
        raise CommandError(f"{' '.join(map(str, argv[:4]))}... exited {p.returncode}: "
                           + " | ".join(tail))
    return p


def timed(argv, **kw):
    """Run argv, return wall seconds (raises CommandError on failure)."""
    t0 = time.perf_counter()
    sh(argv, **kw)
    return time.perf_counter() - t0


def drop_caches():
    """sync; echo 3 > /proc/sys/vm/drop_caches. Returns False if not permitted."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def du_kib(path):
    """Disk usage of path in KiB (du -sk), 0 if missing."""
    if not os.path.exists(path):
        return 0
    p = sh(["du", "-skx", path], check=False, timeout=1800)
    try:
        return int(p.stdout.split()[0])
    except (IndexError, ValueError):
        return 0


def rmtree(path):
    """rm -rf that copes with kernel overlayfs' 000-mode work/ dirs."""
    if os.path.lexists(path):
        sh(["rm", "-rf", "--one-file-system", path], check=False, timeout=1800)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def have(cmd):
    return shutil.which(cmd) is not None


def first_line(argv):
    try:
        p = sh(argv, check=False, timeout=20)
    except CommandError:
        return "?"
    out = (p.stdout + "\n" + p.stderr).strip().splitlines()
    return out[0].strip() if out else "?"


def fs_of(path):
    """'ext4 (rw,relatime,discard) on /dev/vda' for the filesystem holding path."""
    p = sh(["findmnt", "-n", "-o", "FSTYPE,OPTIONS,SOURCE", "-T", path], check=False)
    parts = p.stdout.split()
    return f"{parts[0]} ({parts[1]}) on {parts[2]}" if len(parts) >= 3 else "?"


def machine_facts(repo, work=None):
    """Facts RESULTS.md records: when and where it was measured."""
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    fo = "not installed"
    if have("fuse-overlayfs"):
        p = sh(["fuse-overlayfs", "--version"], check=False)
        for line in (p.stdout + p.stderr).splitlines():
            if line.startswith("fuse-overlayfs"):
                fo = line.split("version")[-1].strip(" :")
    rev = sh(["git", "-C", repo, "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
    dirty = sh(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
               check=False).stdout.strip()
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": os.uname().release,
        "fuse-overlayfs": fo,
        "strata rev": (rev or "no commits yet") + (" (dirty tree)" if dirty else ""),
        "work dir filesystem": fs_of(work or repo),
    }
