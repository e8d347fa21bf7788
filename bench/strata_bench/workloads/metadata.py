"""Workload 2: stat every file of a 100k-file lower tree cold (fresh mount, caches dropped)
and warm (again), untar 100k small files into the mount, rm -rf them. Workload 6 rides
along: the FUSE daemon's peak RSS (VmHWM) at the end of each run. Also (issue 19) a
names-only `find MNT` (what `find / -xdev` does: d_type, no stat of files) cold and warm
on a second fresh mount, and, once per FUSE peer outside the timed runs, the daemon's
syscalls per entry during the cold and warm `find -printf %s` (strace -c), and per file
of an untar and rm -rf of a 5000-file subset (strace -c; strata's FUSE requests per file
from `strata fs stats`). The floor: what one FUSE round trip costs here, a getattr forced
through to the filesystem (statx AT_STATX_FORCE_SYNC on an open file) on each peer."""
import ctypes
import json
import os
import subprocess
import time

from .. import syscalls, trees
from ..mounts import daemon_pid, vm_kib
from ..sysutil import drop_caches, rmtree, sh, timed

AT_EMPTY_PATH = 0x1000
AT_STATX_FORCE_SYNC = 0x2000
STATX_BASIC_STATS = 0x7FF
FORCED = 20000

TITLE = "stat, untar, rm -rf of 100k files; daemon memory"


def stat_all(path):
    """find -printf %s stats every entry (lstat) and prints nothing we keep."""
    return timed(["find", path, "-printf", "%s\n"], quiet=True, timeout=1800)


def names_only(path):
    """find without predicates: reads every directory, stats only directories."""
    return timed(["find", path], quiet=True, timeout=1800)


def sub_tar(tr):
    """A tar of the tree's first five directories (5000 files at full size) and its entry
    count: untarred under strace, which slows the daemon tenfold."""
    tree = os.path.join(tr["lower"], "tree")
    dirs = sorted(os.listdir(tree))[:5]
    out = os.path.join(os.path.dirname(tr["tar"]), "sub.tar")
    if not os.path.exists(out):
        sh(["tar", "-cf", out + ".new", "-C", tr["lower"]] + [f"tree/{d}" for d in dirs],
           timeout=600)
        os.rename(out + ".new", out)
    return out, 1 + sum(1 + len(os.listdir(os.path.join(tree, d))) for d in dirs)


def requests(peer, mnt):
    """FUSE requests strata's daemon has served (the sum of `strata fs stats` op counts)."""
    r = subprocess.run([peer.binary, "fs", "stats", "--json", mnt], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        raise ValueError(f"strata fs stats {mnt}: {r.stderr.strip()[:120]}")
    ops = json.loads(r.stdout)["ops"]
    return sum(v["count"] if isinstance(v, dict) else v for v in ops.values())


def count_syscalls(ctx, tr, n, peer, ms):
    """Daemon syscalls per tree entry during a cold and a warm find -printf %s; per file
    of an untar and an rm -rf of the subset; strata's FUSE requests per file of those."""
    upper, work, mnt = ctx.fresh("metadata-strace", peer.name)
    entries = n + len([d for d, _, _ in os.walk(tr["lower"])])
    sub, sub_entries = sub_tar(tr)
    out = {}
    with peer.mounted([tr["lower"]], upper, work, mnt) as m:
        pid = daemon_pid(m)
        if not pid:
            raise ValueError(f"no daemon process found for {m}")
        drop_caches()
        out[ms["cold"]] = syscalls.count(pid, ["find", m, "-printf", "%s\n"]) / entries
        out[ms["warm"]] = syscalls.count(pid, ["find", m, "-printf", "%s\n"]) / entries
        dest = os.path.join(m, "sub")
        os.mkdir(dest)
        strata = peer.name == "strata"
        r0 = requests(peer, m) if strata else 0
        out[ms["untar"]] = syscalls.count(pid, ["tar", "-xf", sub, "-C", dest]) / sub_entries
        r1 = requests(peer, m) if strata else 0
        out[ms["rm"]] = syscalls.count(pid, ["rm", "-rf", dest]) / sub_entries
        if strata:
            out[ms["req_untar"]] = (r1 - r0) / sub_entries
            out[ms["req_rm"]] = (requests(peer, m) - r1) / sub_entries
    rmtree(os.path.dirname(upper))
    return out


def forced_getattr_us(ctx, tr, peer):
    """Microseconds per statx(AT_STATX_FORCE_SYNC) of an open lower file: on a FUSE mount
    one GETATTR round trip each (nothing cached answers it), on overlayfs the syscall."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(256)
    upper, work, mnt = ctx.fresh("metadata-getattr", peer.name)
    with peer.mounted([tr["lower"]], upper, work, mnt) as m:
        tree = os.path.join(m, "tree")
        d = os.path.join(tree, sorted(os.listdir(tree))[0])
        fd = os.open(os.path.join(d, sorted(os.listdir(d))[0]), os.O_RDONLY)
        try:
            def once():
                if libc.statx(fd, b"", AT_EMPTY_PATH | AT_STATX_FORCE_SYNC,
                              STATX_BASIC_STATS, buf) != 0:
                    raise OSError(ctypes.get_errno(), "statx")
            for _ in range(1000):
                once()
            t = time.perf_counter()
            for _ in range(FORCED):
                once()
            dt = time.perf_counter() - t
        finally:
            os.close(fd)
    rmtree(os.path.dirname(upper))
    return dt / FORCED * 1e6


def run(ctx):
    n = ctx.sizes.small_count
    tr = trees.small_files(ctx.tree_dir(f"small-{n}"), n)
    cold = ctx.metric("metadata", f"stat {n} lower files, cold", "s", key="meta.cold")
    warm = ctx.metric("metadata", f"stat {n} lower files, warm", "s")
    untar = ctx.metric("metadata", f"untar {n} small files into the mount", "s", key="meta.untar")
    rm = ctx.metric("metadata", f"rm -rf those {n} files", "s", key="meta.rm")
    ncold = ctx.metric("metadata", f"find names only over {n} lower files, cold", "s",
                       key="meta.find_cold")
    nwarm = ctx.metric("metadata", f"find names only over {n} lower files, warm", "s",
                       key="meta.find_warm")
    fuse_cols = ["strata", "fuse-overlayfs"]
    sc_cold = ctx.metric("metadata", "daemon syscalls per entry, find -printf cold (strace -c)",
                         "calls", columns=fuse_cols)
    sc_warm = ctx.metric("metadata", "daemon syscalls per entry, find -printf warm (strace -c)",
                         "calls", columns=fuse_cols)
    ms = {
        "cold": sc_cold,
        "warm": sc_warm,
        "untar": ctx.metric("metadata", "daemon syscalls per file, untar of 5000 (strace -c)",
                            "calls", columns=fuse_cols),
        "rm": ctx.metric("metadata", "daemon syscalls per file, rm -rf of them (strace -c)",
                         "calls", columns=fuse_cols),
        "req_untar": ctx.metric("metadata", "FUSE requests per file, untar (strata fs stats)",
                                "requests", columns=["strata"]),
        "req_rm": ctx.metric("metadata", "FUSE requests per file, rm -rf (strata fs stats)",
                             "requests", columns=["strata"]),
    }
    forced = ctx.metric("metadata", "one getattr forced through (statx AT_STATX_FORCE_SYNC): "
                        "a FUSE round trip", "us")
    hwm = ctx.metric("memory", "daemon peak RSS (VmHWM) after workload 2", "MiB",
                     columns=["strata", "fuse-overlayfs"])
    dropped = drop_caches()
    if not dropped:
        cold.name += " (could not drop caches: not cold)"

    for _, peer in ctx.rounds():
        def one():
            upper, work, mnt = ctx.fresh("metadata", peer.name)
            out = {}
            with peer.mounted([tr["lower"]], upper, work, mnt) as m:
                drop_caches()
                out[cold] = stat_all(m)
                out[warm] = stat_all(m)
                dest = os.path.join(m, "untar")
                os.mkdir(dest)
                out[untar] = timed(["tar", "-xf", tr["tar"], "-C", dest], timeout=3600)
                os.sync()  # the untar's writeback must not land inside the rm timing
                out[rm] = timed(["rm", "-rf", dest], timeout=3600)
                if peer.fuse:
                    pid = daemon_pid(m)
                    kib = vm_kib(pid) if pid else None
                    if kib is None:
                        raise ValueError(f"no daemon process found for {m}")
                    out[hwm] = kib / 1024
            rmtree(os.path.dirname(upper))
            upper, work, mnt = ctx.fresh("metadata", peer.name)
            with peer.mounted([tr["lower"]], upper, work, mnt) as m:
                drop_caches()
                out[ncold] = names_only(m)
                out[nwarm] = names_only(m)
            rmtree(os.path.dirname(upper))
            return out
        metrics = [cold, warm, untar, rm, ncold, nwarm] + ([hwm] if peer.fuse else [])
        ctx.measure(peer.name, metrics, one, "metadata")
    for peer in ctx.peers:
        if not peer.fuse:
            continue
        wanted = [m for k, m in ms.items() if not k.startswith("req") or peer.name == "strata"]
        if not syscalls.available():
            for m in wanted:
                m.fail(peer.name, "strace not installed")
            continue
        ctx.measure(peer.name, wanted, lambda: count_syscalls(ctx, tr, n, peer, ms), "metadata")
    for peer in ctx.peers:
        ctx.measure(peer.name, [forced], lambda: {forced: forced_getattr_us(ctx, tr, peer)},
                    "metadata")
    return [cold, warm, ncold, nwarm, untar, rm, forced, hwm] + list(ms.values())
