"""Issue 17: what container networking costs. (a) `run --rm IMG true`, 50 starts each,
interleaved: strata on the default bridge network vs `--net host` (overlay driver, so the
union's cost is the same small one in both), podman on its default network (netavark or
CNI) vs `--network host`. One idle strata container stays on the bridge meanwhile, as on
any machine that runs containers: the bridge and strata's nftables table then exist, and a
start pays only for its own veth pair and address (the first container after an empty
network pays ~20 ms more, once, for the bridge and the table: reported on its own line).
(b) A bounded local transfer host -> container (64 MiB; 4 MiB --quick) through a port
published on 127.0.0.1 (DNAT) vs a container on the host network, MiB/s."""
import socket
import subprocess
import time

from .. import trees
from ..runtimes import PODMAN_ULIMITS, Podman, StrataCli, strata_runtime_missing
from ..sysutil import CommandError, have, sh, timed

TITLE = "container networking"
IMAGE = "bench-busybox"


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def _transfer(port, nbytes, timeout=60):
    """Send nbytes to 127.0.0.1:port, wait for the server to close: MiB/s."""
    deadline = time.monotonic() + 10
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    s.settimeout(timeout)
    chunk = b"x" * (1 << 20)
    t = time.perf_counter()
    for _ in range(nbytes >> 20):
        s.sendall(chunk)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    dt = time.perf_counter() - t
    s.close()
    return (nbytes / (1 << 20)) / dt


def _measure(ctx, strata, podman):
    n = ctx.sizes.start_runs
    cols = ["strata (bridge)", "strata (--net host)", "podman (bridge)", "podman (--net host)"]
    met = ctx.metric("netstart", f"`run --rm IMG true` ({n} starts)", "ms", columns=cols,
                     p90=True, key="netstart")
    cold = ctx.metric("netstart", "first start on an empty bridge (creates bridge + nft table)",
                      "ms", columns=["strata (bridge)"])
    thr = ctx.metric("netstart", f"host -> container, {64 if ctx.sizes.start_runs >= 50 else 4} MiB",
                     "MiB/s", columns=["strata (bridge, -p)", "strata (--net host)"])
    runs = []
    if strata:
        runs += [("strata (bridge)", strata.argv("run", "--rm", IMAGE, "true")),
                 ("strata (--net host)", strata.argv("run", "--rm", "--net", "host", IMAGE, "true"))]
    if podman:
        runs += [("podman (bridge)", podman.argv("run", "--rm", *PODMAN_ULIMITS, IMAGE, "true")),
                 ("podman (--net host)", podman.argv("run", "--rm", "--network", "host",
                                                     *PODMAN_ULIMITS, IMAGE, "true"))]
    if strata:
        ctx.measure("strata (bridge)", [cold],
                    lambda: {cold: timed(strata.argv("run", "--rm", IMAGE, "true"), timeout=120) * 1000},
                    "netstart")
        sh(strata.argv("run", "-d", "--name", "bench-keep", IMAGE, "sleep", "100000"), timeout=120,
           daemon=True)
    ok = []
    for col, argv in runs:
        if ctx.measure(col, [], lambda a=argv: {None: timed(a, timeout=120)}, "netstart"):
            ok.append((col, argv))
        else:
            met.fail(col, f"setup {ctx.last_error}")
    for _ in range(n):
        for col, argv in ok:
            ctx.measure(col, [met], lambda a=argv: {met: timed(a, timeout=120) * 1000}, "netstart")
    if strata:
        nbytes = (64 if ctx.sizes.start_runs >= 50 else 4) << 20
        for col, net in (("strata (bridge, -p)", None), ("strata (--net host)", "host")):
            port = _free_port()
            if net:
                args = ["run", "-d", "--name", "bench-sink", "--net", "host", IMAGE,
                        "sh", "-c", f"nc -l -p {port} > /dev/null"]
            else:
                args = ["run", "-d", "--name", "bench-sink", "-p", f"127.0.0.1:{port}:5001", IMAGE,
                        "sh", "-c", "nc -l -p 5001 > /dev/null"]

            def once(args=args, port=port):
                sh(strata.argv(*args), timeout=120, daemon=True)
                try:
                    return {thr: _transfer(port, nbytes)}
                finally:
                    subprocess.run(strata.argv("rm", "-f", "bench-sink"), capture_output=True)
            ctx.measure(col, [thr], once, "netstart")
        subprocess.run(strata.argv("rm", "-f", "bench-keep"), capture_output=True)
    return [met, cold, thr]


def run(ctx):
    bb = trees.busybox_rootfs(ctx.tree_dir("busybox"))
    strata = podman = None
    if not strata_runtime_missing(ctx.strata_bin):
        strata = StrataCli(ctx.strata_bin, ctx.scratch("netstart", "strata"), "overlay")
        strata.setup(bb["tar"], IMAGE)
    if have("podman"):
        podman = Podman(ctx.scratch("netstart", "podman"))
        try:
            podman.setup(bb["tar"], IMAGE)
        except CommandError:
            podman = None
    try:
        return _measure(ctx, strata, podman)
    finally:
        for r in (strata, podman):
            if r is not None:
                try:
                    r.teardown()
                except (CommandError, AttributeError):
                    pass
