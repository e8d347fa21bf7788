"""Workload 3: on a lower file, an upper file and a delta file (a lower file after a 4 KiB
write, made in an earlier mount), each the size of the big file: sequential read (warm: read
once, then timed), 4 KiB random reads with fio (warm, psync), and a sequential overwrite of
the whole file ending in fsync (on the lower file that includes the copy-up)."""
import json
import os
import shutil
import time

from .. import trees
from ..sysutil import drop_caches, rmtree, sh

TITLE = "sequential read/write, fio random reads"
CHUNK = 1 << 20
TARGETS = [("lower", "big.img"), ("upper", "upper.img"), ("delta", "delta.img")]


def seq_read(path):
    buf = bytearray(CHUNK)
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    return time.perf_counter() - t0


def seq_overwrite(path, size, chunk):
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY)
    try:
        left = size
        while left > 0:
            left -= os.write(fd, chunk[:min(left, CHUNK)])
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t0


def fio_randread(path, seconds):
    argv = ["fio", "--name=randread", f"--filename={path}", "--rw=randread", "--bs=4k",
            "--ioengine=psync", "--readonly", "--invalidate=0", "--output-format=json"]
    if seconds:
        argv += ["--time_based", f"--runtime={seconds}"]
    out = sh(argv, timeout=600, quiet=True).stdout
    return float(json.loads(out[out.index("{"):])["jobs"][0]["read"]["iops"])


def make_delta(peer, lower, upper, work, mnt, offset):
    """A 4 KiB write into delta.img in its own mount, so the next mount finds a delta."""
    with peer.mounted([lower], upper, work, mnt) as m:
        fd = os.open(os.path.join(m, "delta.img"), os.O_WRONLY)
        try:
            os.pwrite(fd, b"\xa5" * 4096, offset)
            os.fsync(fd)
        finally:
            os.close(fd)


def run(ctx):
    size = ctx.sizes.big_bytes
    br = trees.big_files(ctx.tree_dir(f"big-{size}"), size)
    mib = size >> 20
    m = {}
    for kind, _ in TARGETS:
        m["read", kind] = ctx.metric("throughput", f"sequential read {mib} MiB, {kind} file, warm",
                                     "s", key=f"read.{kind}")
    for kind, _ in TARGETS:
        m["fio", kind] = ctx.metric("throughput", f"4 KiB random reads (fio), {kind} file",
                                    "IOPS", better="higher")
    for kind, _ in TARGETS:
        what = "+ copy-up " if kind == "lower" else ""
        m["write", kind] = ctx.metric(
            "throughput", f"sequential overwrite {mib} MiB {what}+ fsync, {kind} file", "s")
    chunk = os.urandom(CHUNK)

    for _, peer in ctx.rounds():
        def one():
            upper, work, mnt = ctx.fresh("throughput", peer.name)
            shutil.copyfile(br["upper_seed"], os.path.join(upper, "upper.img"))
            make_delta(peer, br["lower"], upper, work, mnt, (size // 2) & ~4095)
            out = {}
            drop_caches()  # the previous peer's writeback must not land in this one's timings
            with peer.mounted([br["lower"]], upper, work, mnt) as mp:
                for kind, name in TARGETS:
                    path = os.path.join(mp, name)
                    seq_read(path)  # warm the page cache / daemon
                    out[m["read", kind]] = seq_read(path)
                    out[m["fio", kind]] = fio_randread(path, ctx.sizes.fio_seconds)
                for kind, name in reversed(TARGETS):  # the lower file last: it copies up
                    out[m["write", kind]] = seq_overwrite(os.path.join(mp, name), size, chunk)
            rmtree(os.path.dirname(upper))
            return out
        ctx.measure(peer.name, list(m.values()), one, "throughput")
    return list(m.values())
