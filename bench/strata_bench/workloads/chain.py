"""Issue 14: reading a file through a 5-deep delta chain vs through one delta (strata only).

The chain is built by rotation: 5 strata mounts in turn, each writing 64 scattered 4 KiB
blocks (half aligned, half not) into chain.img and fsyncing, each mount's upper pushed
down as the next one's top lower (lowerdir=u5:u4:u3:u2:u1:lower). The single delta is one
mount writing the same 5 x 64 writes. Both are then read through a fresh strata mount of
their stack: sequential read cold (after drop_caches) and warm (read once, then timed),
and 4 KiB random reads with fio (warm, psync). Warm reads are served by the page cache
above FUSE, so the same two reads are also made with O_DIRECT (every byte through the
daemon's merge of the chain) after the branch files were read once (their pages cached, so
the disk is out of it). The ratio column is chain / one delta; the target is within 1.2x."""
import json
import mmap
import os
import random
import shutil
import time

from .throughput import fio_randread, seq_read
from ..sysutil import drop_caches, rmtree, sh

TITLE = "read through a 5-deep delta chain vs one delta"
DEPTH = 5
WRITES = 64
FILE = "chain.img"


def _write_file(path, size):
    rnd = random.Random(14)
    block = bytearray(rnd.randbytes(1 << 20))
    with open(path, "wb") as f:
        left, i = size, 0
        while left > 0:
            block[0:8] = i.to_bytes(8, "little")
            n = min(left, 1 << 20)
            f.write(block[:n])
            left -= n
            i += 1


def direct_seq_read(path):
    """Sequential O_DIRECT read in 1 MiB requests (page-aligned buffer)."""
    buf = mmap.mmap(-1, 1 << 20)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    t0 = time.perf_counter()
    try:
        off = 0
        while True:
            n = os.preadv(fd, [buf], off)
            if n <= 0:
                break
            off += n
    finally:
        os.close(fd)
    return time.perf_counter() - t0


def fio_direct(path, seconds):
    argv = ["fio", "--name=randread", f"--filename={path}", "--rw=randread", "--bs=4k",
            "--ioengine=psync", "--direct=1", "--readonly", "--output-format=json"]
    argv += ["--time_based", f"--runtime={seconds or 1}"]
    out = sh(argv, timeout=600, quiet=True).stdout
    return float(json.loads(out[out.index("{"):])["jobs"][0]["read"]["iops"])


def warm_branches(lowers):
    """Read every branch file once, so direct reads through the mount hit cached pages."""
    for d in lowers:
        for root, _, files in os.walk(d):
            for f in files:
                seq_read(os.path.join(root, f))


def lower_tree(ctx, size):
    root = ctx.tree_dir(f"chain-{size}")
    stamp = os.path.join(root, ".built")
    if not os.path.exists(stamp):
        rmtree(root)
        os.makedirs(f"{root}/lower")
        _write_file(f"{root}/lower/{FILE}", size)
        os.sync()
        with open(stamp, "w") as f:
            f.write(str(size))
    return f"{root}/lower"


def level_writes(size, level):
    """(offset, bytes) of the writes of one level: deterministic, different per level."""
    rnd = random.Random(1000 + level)
    out = []
    for k in range(WRITES):
        if k % 2:
            off = rnd.randrange(0, size - 8192)
        else:
            off = rnd.randrange(0, size // 4096) * 4096
        out.append((off, bytes([level * 16 + k % 16]) * 4096))
    return out


def write_level(peer, lowers, upper, work, mnt, writes):
    with peer.mounted(lowers, upper, work, mnt) as m:
        fd = os.open(os.path.join(m, FILE), os.O_WRONLY)
        try:
            for off, data in writes:
                os.pwrite(fd, data, off)
            os.fsync(fd)
        finally:
            os.close(fd)


def build(peer, base, lower, size, depth):
    """Branches whose merged chain.img carries all DEPTH levels of writes, in `depth` layers
    (depth 1: one mount with every write). Returns the lower list, top first."""
    lowers = [lower]
    levels = [level_writes(size, k) for k in range(1, DEPTH + 1)]
    groups = levels if depth == DEPTH else [sum(levels, [])]
    for k, writes in enumerate(groups, 1):
        upper, work = f"{base}/u{k}", f"{base}/w{k}"
        write_level(peer, lowers, upper, work, f"{base}/mnt", writes)
        shutil.rmtree(work)  # a layer taken from a stopped container has no workdir
        lowers = [upper] + lowers
    return lowers


def expected(lower, size):
    with open(os.path.join(lower, FILE), "rb") as f:
        data = bytearray(f.read())
    for k in range(1, DEPTH + 1):
        for off, d in level_writes(size, k):
            data[off:off + len(d)] = d
    return bytes(data)


def run(ctx):
    size = ctx.sizes.big_bytes
    lower = lower_tree(ctx, size)
    mib = size >> 20
    cols = [f"strata, {DEPTH}-deep chain", "strata, one delta"]
    m = {
        "cold": ctx.metric("chain", f"sequential read {mib} MiB, cold", "s", columns=cols,
                           key="chain.cold"),
        "warm": ctx.metric("chain", f"sequential read {mib} MiB, warm", "s", columns=cols,
                           key="chain.warm"),
        "fio": ctx.metric("chain", "4 KiB random reads (fio), warm", "IOPS", columns=cols,
                          better="higher", key="chain.fio"),
        "dseq": ctx.metric("chain", f"sequential O_DIRECT read {mib} MiB, branches cached", "s",
                           columns=cols, key="chain.direct"),
        "dfio": ctx.metric("chain", "4 KiB random O_DIRECT reads (fio), branches cached", "IOPS",
                           columns=cols, better="higher", key="chain.dfio"),
    }
    strata = [p for p in ctx.peers if p.name == "strata"]
    if not strata:
        for x in m.values():
            for c in cols:
                x.fail(c, ctx.unavailable.get("strata", "strata unavailable"))
        return list(m.values())
    peer = strata[0]
    want = expected(lower, size) if size <= (64 << 20) else None
    for _ in range(ctx.runs):
        for col, depth in zip(cols, (DEPTH, 1)):
            def one(depth=depth):
                base = ctx.scratch("chain", f"depth{depth}")
                rmtree(base)
                os.makedirs(base)
                lowers = build(peer, base, lower, size, depth)
                out = {}
                with peer.mounted(lowers, f"{base}/top", f"{base}/topwork", f"{base}/mnt") as mp:
                    path = os.path.join(mp, FILE)
                    if want is not None:
                        with open(path, "rb") as f:
                            if f.read() != want:
                                raise ValueError(f"{FILE} through {depth} layers: wrong bytes")
                    drop_caches()
                    out[m["cold"]] = seq_read(path)
                    seq_read(path)
                    out[m["warm"]] = seq_read(path)
                    out[m["fio"]] = fio_randread(path, ctx.sizes.fio_seconds)
                    warm_branches(lowers)
                    direct_seq_read(path)
                    out[m["dseq"]] = direct_seq_read(path)
                    out[m["dfio"]] = fio_direct(path, ctx.sizes.fio_seconds)
                rmtree(base)
                return out
            ctx.measure(col, list(m.values()), one, "chain")
    return list(m.values())
