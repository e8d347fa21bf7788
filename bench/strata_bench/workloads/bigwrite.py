"""Workload 1: a 4 KiB write in the middle of a 1 GiB lower file (as `dd bs=4k count=1
seek=N conv=notrunc`: open O_WRONLY, pwrite, close, timed in-process so exec noise stays
out), then the upper dir's size (du -sk after unmount)."""
import os
import time

from .. import trees
from ..sysutil import drop_caches, du_kib, rmtree

TITLE = "4 KiB write into a big lower file"


def run(ctx):
    size = ctx.sizes.big_bytes
    br = trees.big_files(ctx.tree_dir(f"big-{size}"), size)
    lat = ctx.metric("bigwrite", f"4 KiB write into a {size >> 20} MiB lower file", "ms",
                     key="bigwrite.latency")
    upper_kib = ctx.metric("bigwrite", "upper dir after that write (du -sk)", "KiB",
                           key="bigwrite.upper")
    block = os.urandom(4096)
    offset = (size // 2) & ~4095

    for _, peer in ctx.rounds():
        def one():
            upper, work, mnt = ctx.fresh("bigwrite", peer.name)
            with peer.mounted([br["lower"]], upper, work, mnt) as m:
                drop_caches()  # same start for all: nothing cached, no writeback pending
                t0 = time.perf_counter()
                fd = os.open(os.path.join(m, "big.img"), os.O_WRONLY)
                try:
                    os.pwrite(fd, block, offset)
                finally:
                    os.close(fd)
                dt = time.perf_counter() - t0
                with open(os.path.join(m, "big.img"), "rb") as f:
                    f.seek(offset)
                    if f.read(4096) != block:
                        raise ValueError("read after write returned other data")
            kib = du_kib(upper)
            rmtree(os.path.dirname(upper))
            return {lat: dt * 1000, upper_kib: kib}
        ctx.measure(peer.name, [lat, upper_kib], one, "bigwrite")
    return [lat, upper_kib]
