"""Workload 4: container start, `run --rm IMG true`, many times per runtime (interleaved),
median and p90: strata with its fuse and overlay drivers, runc alone on a prepared bundle,
podman with fuse-overlayfs as mount_program. Each strata store keeps one idle container
on its default network meanwhile, as podman keeps its network and docker its docker0: the
bridge and strata's nftables table exist, so a start pays for itself, not for making and
tearing down an empty network (that cost, ~80 ms once per empty network, is netstart's
"first start" line)."""
import subprocess

from .. import trees
from ..runtimes import Podman, Runc, StrataCli, strata_runtime_missing
from ..sysutil import CommandError, have, sh, timed

TITLE = "container start"
IMAGE = "bench-busybox"


def runners(ctx, workload):
    """The runtimes for a container workload, and {column: why missing} for the others."""
    bb = trees.busybox_rootfs(ctx.tree_dir("busybox"))
    out, missing = [], {}
    why = strata_runtime_missing(ctx.strata_bin)
    for driver in ("fuse", "overlay"):
        if why:
            missing[f"strata ({driver})"] = why
        else:
            out.append(StrataCli(ctx.strata_bin, ctx.scratch(workload, f"strata-{driver}"), driver))
    if workload == "start":
        if have("runc"):
            out.append(Runc(ctx.scratch(workload, "runc"), bb["rootfs"]))
        else:
            missing["runc"] = "runc not installed"
    if have("podman"):
        out.append(Podman(ctx.scratch(workload, "podman")))
    else:
        missing["podman"] = "podman not installed"
    return bb, out, missing


def run(ctx):
    bb, rts, missing = runners(ctx, "start")
    cols = ["strata (fuse)", "strata (overlay)", "runc", "podman"]
    n = ctx.sizes.start_runs
    met = ctx.metric("start", f"`run --rm IMG true` ({n} starts)", "ms", columns=cols, p90=True,
                     key="start")
    for c, why in missing.items():
        met.fail(c, why)
    ready = []
    try:
        for r in rts:
            def setup(r=r):
                r.setup(bb["tar"], IMAGE)
                if isinstance(r, StrataCli):
                    sh(r.argv("run", "-d", "--name", "bench-keep", IMAGE, "sleep", "100000"),
                       timeout=120, daemon=True)
                timed(r.run_rm(IMAGE, "true"), timeout=120)  # warm-up, not counted
                return {}
            if ctx.measure(r.name, [], setup, "start"):
                ready.append(r)
            else:
                met.fail(r.name, f"setup {ctx.last_error}")
        for _ in range(n):
            for r in ready:
                ctx.measure(r.name, [met],
                            lambda r=r: {met: timed(r.run_rm(IMAGE, "true"), timeout=120) * 1000},
                            "start")
    finally:
        for r in rts:
            if isinstance(r, StrataCli):
                subprocess.run(r.argv("rm", "-f", "bench-keep"), capture_output=True)
            try:
                r.teardown()
            except CommandError:
                pass
    return [met]
