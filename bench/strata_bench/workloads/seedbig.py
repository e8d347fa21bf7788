"""Workload 5b (issue 14), the seed scenario extended: an image holding a 1 GiB file (real
data); N containers each write 64 KiB into a new file, then 4 KiB into that file; commit
each; N containers run from the commits and read the changed block. Per container: commit
time (median and slowest of the N), store growth per commit (du -skx of the store, growth
divided by N), run-from-commit time and disk. One scenario per run, fresh store.
`STRATA_BASELINE_BIN=PATH` adds a column "strata (fuse, before)" run with that binary
(e.g. a build of main), for before/after numbers in the same run."""
import os
import shutil
import statistics

from .. import trees
from ..runtimes import StrataCli, strata_runtime_missing
from ..sysutil import CommandError, du_kib, sh, timed
from .start import runners as base_runners

TITLE = "seed scenario with a 1 GiB file: 64 KiB new + 4 KiB into it, commit, run from commits"
IMAGE = "bench-bigimg"
WRITE = ["sh", "-c", "dd if=/dev/urandom of=/new bs=64k count=1 2>/dev/null && "
         "dd if=/dev/urandom of=/data/big.img bs=4k count=1 seek=1000 conv=notrunc 2>/dev/null && sync"]
READ = ["sh", "-c", "dd if=/data/big.img bs=4k skip=1000 count=1 of=/dev/null 2>/dev/null"]


def image_tar(ctx, bb):
    """busybox plus /data/big.img (the bigwrite workload's 1 GiB lower file) as a tar."""
    root = ctx.tree_dir("seedbig")
    big = trees.big_files(ctx.tree_dir("big"), ctx.sizes.big_bytes)["lower"] + "/big.img"
    tar = f"{root}/image.tar"
    stamp = f"{tar}.size"
    want = str(os.path.getsize(big))
    if not (os.path.exists(tar) and os.path.exists(stamp) and open(stamp).read() == want):
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(f"{root}/extra/data")
        os.link(big, f"{root}/extra/data/big.img")
        shutil.copy(bb["tar"], tar)
        sh(["tar", "--numeric-owner", "-rf", tar, "-C", f"{root}/extra", "./data"], timeout=1800)
        with open(stamp, "w") as f:
            f.write(want)
    return tar


def scenario(r, tar, n, m):
    r.setup(tar, IMAGE)
    out = {}
    try:
        base = du_kib(r.disk_root())
        t = [timed(r.run_named(f"c{k}", IMAGE, *WRITE), timeout=600) for k in range(n)]
        out[m["t_write"]] = statistics.median(t)
        after_write = du_kib(r.disk_root())
        out[m["d_write"]] = (after_write - base) / n
        t = [timed(r.commit(f"c{k}", f"bench-big-{k}"), timeout=900) for k in range(n)]
        out[m["t_commit"]] = statistics.median(t) * 1000
        out[m["t_commit_max"]] = max(t) * 1000
        out[m["d_commit"]] = (du_kib(r.disk_root()) - after_write) / n
        for k in range(n):
            timed(r.rm(f"c{k}"), timeout=120)
        before_run = du_kib(r.disk_root())
        t = [timed(r.run_named(f"d{k}", f"bench-big-{k}", *READ), timeout=900) for k in range(n)]
        out[m["t_run"]] = statistics.median(t)
        out[m["d_run"]] = (du_kib(r.disk_root()) - before_run) / n
        for k in range(n):
            timed(r.rm(f"d{k}"), timeout=120)
    finally:
        try:
            r.teardown()
        except CommandError:
            pass
    return out


def run(ctx):
    bb, rts, missing = base_runners(ctx, "seedbig")
    cols = ["strata (fuse)", "strata (overlay)", "podman"]
    before = os.environ.get("STRATA_BASELINE_BIN")
    if before:
        cols.insert(1, "strata (fuse, before)")
        why = strata_runtime_missing(before)
        if why:
            missing["strata (fuse, before)"] = why
        else:
            b = StrataCli(before, ctx.scratch("seedbig", "strata-before"), "fuse")
            b.name = "strata (fuse, before)"
            rts.insert(1, b)
    n = ctx.sizes.seed_count
    spec = [
        ("t_write", f"run a container writing 64 KiB + 4 KiB into the 1 GiB file (median of {n})", "s"),
        ("d_write", "disk per container after its writes", "KiB"),
        ("t_commit", f"commit, per container (median of {n})", "ms"),
        ("t_commit_max", f"commit, slowest of the {n}", "ms"),
        ("d_commit", "store growth per commit", "KiB"),
        ("t_run", f"run a container from a commit, reading the changed block (median of {n})", "s"),
        ("d_run", "disk per container run from a commit", "KiB"),
    ]
    m = {k: ctx.metric("seedbig", name, unit, columns=cols, key=f"seedbig.{k}")
         for k, name, unit in spec}
    for c, why in missing.items():
        for x in m.values():
            x.fail(c, why)
    tar = image_tar(ctx, bb)
    for _, r in ctx.rounds(rts):
        ctx.measure(r.name, list(m.values()), lambda r=r: scenario(r, tar, n, m), "seedbig")
    return list(m.values())
