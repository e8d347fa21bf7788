"""The workloads of issue 7, one module each. ORDER is the order of a full run."""
from . import (bigwrite, build, chain, lazy, metadata, netstart, throughput, start, seed,
               seedbig, tracing)

ORDER = {
    "bigwrite": bigwrite,      # (1) 4 KiB write into a big lower file
    "metadata": metadata,      # (2) stat cold/warm, untar, rm -rf; (6) daemon peak RSS
    "throughput": throughput,  # (3) sequential read/write, fio random reads
    "chain": chain,            # issue 14: reads through a 5-deep delta chain vs one delta
    "start": start,            # (4) container start
    "seed": seed,              # (5) 10 containers writing 64 KiB, commit, run from commits
    "seedbig": seedbig,        # (5b) the same over a 1 GiB file: 4 KiB into it, commit, run
    "tracing": tracing,        # (7) --trace overhead
    "netstart": netstart,      # issue 17: start on the bridge vs --net host; published-port transfer
    "lazy": lazy,              # issue 20: eStargz lazy pull vs full pull vs podman, shaped veth
    "build": build,            # issue 18: build cold/cached/late change, big-file step layer
}
ALIASES = {"memory": "metadata"}
