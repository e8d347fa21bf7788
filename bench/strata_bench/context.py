"""What every workload is handed: sizes, run count, work dirs, which peers are usable, and the
helpers that run one measurement per (run, peer) and record a failure instead of aborting."""
from dataclasses import dataclass, field
import os
import traceback

from .stats import Metric
from .sysutil import CommandError, log, rmtree, say

MiB = 1 << 20
GiB = 1 << 30


@dataclass
class Sizes:
    big_bytes: int        # the big lower/upper/delta files (workloads 1 and 3)
    small_count: int      # files in the metadata tree (workload 2)
    fio_seconds: int      # random-read duration per target; 0 = read the file once
    start_runs: int       # container starts per driver (workload 4)
    seed_count: int       # containers in the seed scenario (workload 5)


FULL = Sizes(big_bytes=GiB, small_count=100_000, fio_seconds=4, start_runs=50, seed_count=10)
QUICK = Sizes(big_bytes=8 * MiB, small_count=300, fio_seconds=0, start_runs=3, seed_count=2)


@dataclass
class Context:
    repo: str
    work: str
    runs: int
    sizes: Sizes
    quick: bool
    peers: list                                   # usable union Peer objects, strata first
    strata_bin: str = None
    unavailable: dict = field(default_factory=dict)   # column name -> reason
    harness_errors: list = field(default_factory=list)  # failures of a peer, not of strata
    strata_errors: list = field(default_factory=list)
    last_error: str = ""

    def union_columns(self):
        return ["strata", "fuse-overlayfs", "overlayfs"]

    def tree_dir(self, name):
        return os.path.join(self.work, "trees", name)

    def scratch(self, *parts):
        return os.path.join(self.work, "runs", *parts)

    def metric(self, workload, name, unit, columns=None, **kw):
        m = Metric(workload, name, unit, list(columns or self.union_columns()), **kw)
        for c in m.columns:
            if c in self.unavailable:
                m.fail(c, self.unavailable[c])
        return m

    def fresh(self, workload, peer_name):
        """Empty upper, work and mountpoint dirs for one mount of one peer."""
        base = self.scratch(workload, peer_name)
        rmtree(base)
        dirs = [os.path.join(base, d) for d in ("upper", "work", "mnt")]
        for d in dirs:
            os.makedirs(d)
        return dirs

    def rounds(self, peers=None):
        """(run index, peer) with peers interleaved inside each run, so drift hits all alike."""
        peers = self.peers if peers is None else peers
        for i in range(self.runs):
            for p in peers:
                yield i, p

    def measure(self, column, metrics, fn, workload=""):
        """fn() -> {Metric: value}. Adds one sample per metric (None on failure) so run pairs
        stay aligned; a failure is noted on every metric and logged, never raised."""
        if any(column in m.notes and all(x is None for x in m.samples.get(column, []))
               for m in metrics):
            for m in metrics:
                m.add(column, None)
            return False  # failed in an earlier run: do not spend time on it again
        try:
            values = fn()
        except KeyboardInterrupt:
            raise
        except (CommandError, OSError, ValueError, KeyError) as e:
            why = f"error: {str(e)[:160]}"
            self.last_error = why
            log(traceback.format_exc())
            say(f"  {workload} {column}: {why}")
            (self.strata_errors if column.startswith("strata") else self.harness_errors).append(
                f"{workload} {column}: {e}")
            for m in metrics:
                m.add(column, None)
                m.fail(column, why)
            return False
        for m in metrics:
            m.add(column, values.get(m))
        return True
