"""Workload 7: the cost of `strata mount --trace FILE` on the metadata workload (cold stat of
every file, untar), strata traced against strata untraced, same tree."""
import os

from .. import trees
from ..mounts import FuseProgram
from ..runtimes import strata_trace_missing
from ..sysutil import drop_caches, rmtree, timed
from .metadata import stat_all

TITLE = "tracing overhead"


def run(ctx):
    n = ctx.sizes.small_count
    cols = ["strata --trace", "strata"]
    cold = ctx.metric("tracing", f"stat {n} lower files, cold", "s", columns=cols)
    untar = ctx.metric("tracing", f"untar {n} small files", "s", columns=cols)
    size = ctx.metric("tracing", "trace file size", "KiB", columns=cols)
    metrics = [cold, untar, size]
    why = ctx.unavailable.get("strata") or strata_trace_missing(ctx.strata_bin)
    if why:
        for x in metrics:
            for c in cols:
                x.fail(c, why)
        return metrics
    tr = trees.small_files(ctx.tree_dir(f"small-{n}"), n)
    peer = FuseProgram("strata", ctx.strata_bin)
    for _ in range(ctx.runs):
        for col in cols:
            def one(col=col):
                upper, work, mnt = ctx.fresh("tracing", col.replace(" ", ""))
                trace = os.path.join(os.path.dirname(upper), "trace.jsonl") \
                    if col != "strata" else None
                out = {}
                with peer.mounted([tr["lower"]], upper, work, mnt, trace=trace) as m:
                    drop_caches()  # cold: every lookup reaches the daemon and its trace
                    out[cold] = stat_all(m)
                    dest = os.path.join(m, "untar")
                    os.mkdir(dest)
                    out[untar] = timed(["tar", "-xf", tr["tar"], "-C", dest], timeout=3600)
                if trace:
                    out[size] = os.path.getsize(trace) / 1024 if os.path.exists(trace) else 0
                rmtree(os.path.dirname(upper))
                return out
            ctx.measure(col, metrics if col != "strata" else metrics[:2], one, "tracing")
    return metrics
