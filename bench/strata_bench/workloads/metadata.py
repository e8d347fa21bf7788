"""Workload 2: stat every file of a 100k-file lower tree cold (fresh mount, caches dropped)
and warm (again), untar 100k small files into the mount, rm -rf them. Workload 6 rides
along: the FUSE daemon's peak RSS (VmHWM) at the end of each run."""
import os

from .. import trees
from ..mounts import daemon_pid, vm_kib
from ..sysutil import drop_caches, rmtree, timed

TITLE = "stat, untar, rm -rf of 100k files; daemon memory"


def stat_all(path):
    """find -printf %s stats every entry (lstat) and prints nothing we keep."""
    return timed(["find", path, "-printf", "%s\n"], quiet=True, timeout=1800)


def run(ctx):
    n = ctx.sizes.small_count
    tr = trees.small_files(ctx.tree_dir(f"small-{n}"), n)
    cold = ctx.metric("metadata", f"stat {n} lower files, cold", "s", key="meta.cold")
    warm = ctx.metric("metadata", f"stat {n} lower files, warm", "s")
    untar = ctx.metric("metadata", f"untar {n} small files into the mount", "s", key="meta.untar")
    rm = ctx.metric("metadata", f"rm -rf those {n} files", "s", key="meta.rm")
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
            return out
        metrics = [cold, warm, untar, rm] + ([hwm] if peer.fuse else [])
        ctx.measure(peer.name, metrics, one, "metadata")
    return [cold, warm, untar, rm, hwm]
