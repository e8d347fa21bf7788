"""bench/run: arguments, setup (peers, strata build, probes), the workload loop, the report."""
import argparse
import fcntl
import os
import sys
import time

from . import install, mounts, report, sysutil
from .context import FULL, QUICK, Context
from .sysutil import rmtree, say
from .workloads import ALIASES, ORDER

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(BENCH)

NEEDS = {  # Debian packages per workload
    "bigwrite": ["fuse-overlayfs"],
    "metadata": ["fuse-overlayfs"],
    "throughput": ["fuse-overlayfs", "fio"],
    "start": ["runc", "podman", "fuse-overlayfs", "busybox-static"],
    "seed": ["podman", "fuse-overlayfs", "busybox-static"],
    "seedbig": ["podman", "fuse-overlayfs", "busybox-static"],
    "tracing": [],
    "chain": ["fio"],
    "netstart": ["podman", "busybox-static", "nftables"],
    "build": ["podman", "fuse-overlayfs", "busybox-static"],
    "lazy": ["podman", "busybox-static", "docker-registry", "iproute2", "curl"],
}


def parse(argv):
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    ap.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                    help=f"any of: {', '.join(list(ORDER) + list(ALIASES))} (default: all)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes that finish in seconds")
    ap.add_argument("--runs", type=int, help="runs per peer (default 3; 1 with --quick)")
    ap.add_argument("--workdir", help="scratch dir for branches and mounts "
                    "(default bench/work/full, bench/work/quick with --quick)")
    ap.add_argument("--results", help="write the markdown report here (default: bench/RESULTS.md "
                    "for a full run, WORKDIR/RESULTS-partial.md otherwise)")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install peers")
    ap.add_argument("--no-build", action="store_true", help="use target/release/strata as is")
    ap.add_argument("--strict", action="store_true", help="exit 1 if strata fails a workload too")
    ap.add_argument("--list", action="store_true", help="list the workloads and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo every command")
    return ap.parse_args(argv)


def select(names):
    out = []
    for n in names or ORDER:
        n = ALIASES.get(n, n)
        if n not in ORDER:
            raise SystemExit(f"bench/run: unknown workload {n!r}; try --list")
        if n not in out:
            out.append(n)
    return out


def main(argv):
    args = parse(argv)
    if args.list:
        for name, mod in ORDER.items():
            print(f"{name:11s} {mod.TITLE}")
        for a, n in ALIASES.items():
            print(f"{a:11s} (part of {n})")
        return 0
    if os.geteuid() != 0:
        print("bench/run: needs root (kernel overlayfs mounts, drop_caches)", file=sys.stderr)
        return 2
    chosen = select(args.workloads)
    sizes = QUICK if args.quick else FULL
    runs = args.runs or (1 if args.quick else 3)
    # quick and full runs get sibling dirs, so a test suite's --quick never touches (or
    # unmounts) a full run's mounts; a lock keeps two runs out of one dir.
    work = os.path.abspath(args.workdir or os.path.join(BENCH, "work",
                                                        "quick" if args.quick else "full"))
    os.makedirs(work, exist_ok=True)
    lock = open(os.path.join(work, ".lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"bench/run: another bench/run is using {work}", file=sys.stderr)
        return 2
    sysutil.LOG_PATH = os.path.join(work, "log.txt")
    sysutil.VERBOSE = args.verbose
    open(sysutil.LOG_PATH, "w").close()
    if args.quick:
        mounts.DAEMON_EXIT_WAIT = 0.3
    mounts.install_cleanup_handlers()
    mounts.cleanup_stale(work)
    notes = []
    t_start, load_start = time.time(), sysutil.loadavg()

    if not args.no_install:
        need = sorted({p for w in chosen for p in NEEDS[w]})
        err = install.ensure_packages(need)
        if err:
            notes.append(err)
            say(err)
    strata_bin, how = install.strata_binary(REPO, build=not args.no_build)
    ctx = Context(repo=REPO, work=work, runs=runs, sizes=sizes, quick=args.quick, peers=[],
                  strata_bin=strata_bin)
    if not strata_bin:
        ctx.unavailable["strata"] = f"not built: {how}"
    for peer in mounts.union_peers(strata_bin):
        if peer.fuse and not os.path.exists(peer.binary):
            ctx.unavailable[peer.name] = f"{peer.binary} missing"
            continue
        err = mounts.probe(peer, ctx.scratch("probe", peer.name))
        if err:
            ctx.unavailable[peer.name] = f"mount fails: {err[:160]}"
            say(f"{peer.name}: mount probe failed: {err}")  # reported, not a harness error
        else:
            ctx.peers.append(peer)

    metrics, durations, titles = [], {}, {}
    interrupted = False
    try:
        for w in chosen:
            mod = ORDER[w]
            titles[w] = mod.TITLE
            say(f"== {w}: {mod.TITLE}")
            t0 = time.time()
            metrics += mod.run(ctx)
            durations[w] = time.time() - t0
            say(f"   {w} took {durations[w]:.1f} s")
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: unmounting and cleaning up")
    finally:
        mounts.cleanup_all()
        mounts.cleanup_stale(work)
        rmtree(os.path.join(work, "runs"))
    if interrupted:
        return 130
    titles["memory"] = "FUSE daemon peak RSS during workload 2"

    full = not args.quick and not args.workloads
    config = {
        "strata binary": how,
        "mode": ("--quick" if args.quick else "full") + f", runs={runs}",
        "sizes": (f"big file {sizes.big_bytes >> 20} MiB, {sizes.small_count} small files, "
                  f"fio {sizes.fio_seconds or 'one pass'} s, {sizes.start_runs} starts, "
                  f"{sizes.seed_count} seed containers"),
        "mounts": "strata and fuse-overlayfs `PROG -o lowerdir=..,upperdir=..,workdir=.. MNT`; "
                  "kernel `mount -t overlay` with default options; lower dirs shared read-only, "
                  "fresh upper/work per mount",
        "total time": f"{time.time() - t_start:.0f} s",
        "load average (1, 5, 15 min)": f"{load_start} at the start, {sysutil.loadavg()} at "
                                       "the end (other work on the machine adds noise)",
    }
    for c, why in ctx.unavailable.items():
        notes.append(f"{c}: {why}")
    notes += [f"error: {e}" for e in ctx.harness_errors + ctx.strata_errors]
    print(report.terminal(metrics, [f"note: {n}" for n in notes]))
    dest = args.results or (os.path.join(BENCH, "RESULTS.md") if full
                            else os.path.join(work, "RESULTS-partial.md"))
    with open(dest, "w") as f:
        f.write(report.markdown(metrics, sysutil.machine_facts(REPO, work), config, titles,
                                durations, notes))
    say(f"wrote {dest} (log: {sysutil.LOG_PATH})")
    if ctx.harness_errors or (args.strict and (ctx.strata_errors or "strata" in ctx.unavailable)):
        return 1
    return 0
