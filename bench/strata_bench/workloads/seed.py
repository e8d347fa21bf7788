"""Workload 5, the seed scenario: N containers each writing 64 KiB with dd, commit each,
N containers from the commits. Time per container for each step, and disk per container
(du -skx of the runtime's store: growth divided by N). One scenario per run, fresh store."""
from .start import runners
from ..sysutil import CommandError, du_kib, timed

TITLE = "the seed scenario: write 64 KiB, commit, run from commits"
IMAGE = "bench-busybox"
WRITE = ["sh", "-c", "dd if=/dev/urandom of=/data bs=64k count=1 2>/dev/null && sync"]


def scenario(r, bb, n, m):
    r.setup(bb["tar"], IMAGE)
    out = {}
    try:
        base = du_kib(r.disk_root())
        t = sum(timed(r.run_named(f"c{k}", IMAGE, *WRITE), timeout=300) for k in range(n))
        out[m["t_write"]] = t / n
        after_write = du_kib(r.disk_root())
        out[m["d_write"]] = (after_write - base) / n
        t = sum(timed(r.commit(f"c{k}", f"bench-seed-{k}"), timeout=300) for k in range(n))
        out[m["t_commit"]] = t / n
        out[m["d_commit"]] = (du_kib(r.disk_root()) - after_write) / n
        for k in range(n):
            timed(r.rm(f"c{k}"), timeout=120)
        before_run = du_kib(r.disk_root())
        t = sum(timed(r.run_named(f"d{k}", f"bench-seed-{k}", "true"), timeout=300)
                for k in range(n))
        out[m["t_run"]] = t / n
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
    bb, rts, missing = runners(ctx, "seed")
    n = ctx.sizes.seed_count
    cols = ["strata (fuse)", "strata (overlay)", "podman"]
    spec = [
        ("t_write", f"run a container writing 64 KiB with dd (each of {n})", "s"),
        ("d_write", "disk per container after its write", "KiB"),
        ("t_commit", "commit, per container", "s"),
        ("d_commit", "disk per committed image", "KiB"),
        ("t_run", "run a container from a commit, per container", "s"),
        ("d_run", "disk per container run from a commit", "KiB"),
    ]
    m = {k: ctx.metric("seed", name, unit, columns=cols, key=f"seed.{k}") for k, name, unit in spec}
    for c, why in missing.items():
        for x in m.values():
            x.fail(c, why)
    for _, r in ctx.rounds(rts):
        ctx.measure(r.name, list(m.values()), lambda r=r: scenario(r, bb, n, m), "seed")
    return list(m.values())
