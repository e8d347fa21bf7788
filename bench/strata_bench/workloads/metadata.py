"""Workload 2: stat every file of a 100k-file lower tree cold (fresh mount, caches dropped)
and warm (again), untar 100k small files into the mount, rm -rf them. Workload 6 rides
along: the FUSE daemon's peak RSS (VmHWM) at the end of each run. Also (issue 19) a
names-only `find MNT` (what `find / -xdev` does: d_type, no stat of files) cold and warm
on a second fresh mount, and, once per FUSE peer outside the timed runs, the daemon's
syscalls per entry during the cold and warm `find -printf %s` (strace -c)."""
import os

from .. import syscalls, trees
from ..mounts import daemon_pid, vm_kib
from ..sysutil import drop_caches, rmtree, timed

TITLE = "stat, untar, rm -rf of 100k files; daemon memory"


def stat_all(path):
    """find -printf %s stats every entry (lstat) and prints nothing we keep."""
    return timed(["find", path, "-printf", "%s\n"], quiet=True, timeout=1800)


def names_only(path):
    """find without predicates: reads every directory, stats only directories."""
    return timed(["find", path], quiet=True, timeout=1800)


def count_syscalls(ctx, tr, n, peer, cold_m, warm_m):
    """Daemon syscalls per tree entry during a cold and a warm find -printf %s."""
    upper, work, mnt = ctx.fresh("metadata-strace", peer.name)
    entries = n + len([d for d, _, _ in os.walk(tr["lower"])])
    with peer.mounted([tr["lower"]], upper, work, mnt) as m:
        pid = daemon_pid(m)
        if not pid:
            raise ValueError(f"no daemon process found for {m}")
        drop_caches()
        cold = syscalls.count(pid, ["find", m, "-printf", "%s\n"])
        warm = syscalls.count(pid, ["find", m, "-printf", "%s\n"])
    rmtree(os.path.dirname(upper))
    return {cold_m: cold / entries, warm_m: warm / entries}


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
        if not syscalls.available():
            for m in (sc_cold, sc_warm):
                m.fail(peer.name, "strace not installed")
            continue
        ctx.measure(peer.name, [sc_cold, sc_warm],
                    lambda: count_syscalls(ctx, tr, n, peer, sc_cold, sc_warm), "metadata")
    return [cold, warm, ncold, nwarm, untar, rm, sc_cold, sc_warm, hwm]
