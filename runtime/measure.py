#!/usr/bin/env python3
"""Issue 4's numbers, measured with real containers (as root): start latency of
`strata run --rm busybox true` and the seed scenario (10 containers each writing 64 KiB,
commit each, 10 containers from the commits), per storage driver.

    cargo build --release -p strata-cli
    sudo python3 runtime/measure.py [--strata target/release/strata] [--runs 30]

Prints a Markdown table (the one in runtime/README.md). A private store in a temporary
directory; everything it makes is removed at the end.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def busybox_tar(work):
    rootfs = os.path.join(work, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    os.makedirs(os.path.join(rootfs, "etc"))
    os.makedirs(os.path.join(rootfs, "tmp"))
    bb = shutil.which("busybox") or "/bin/busybox"
    shutil.copy(bb, os.path.join(rootfs, "bin/busybox"))
    for applet in sh(bb, "--list").split():
        if applet != "busybox":
            os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    with open(os.path.join(rootfs, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    tar = os.path.join(work, "busybox.tar")
    sh("tar", "-C", rootfs, "-cf", tar, ".")
    return tar


def nearest_rank(sorted_vals, p):
    return sorted_vals[max(0, math.ceil(p / 100 * len(sorted_vals)) - 1)]


def du_kib(*paths):
    out = sh("du", "-sk", "--total", *paths)
    return int(out.strip().splitlines()[-1].split()[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", default="target/release/strata")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--drivers", default="fuse,overlay")
    a = ap.parse_args()
    strata = os.path.abspath(a.strata)
    work = tempfile.mkdtemp(prefix="strata-measure-")
    store = os.path.join(work, "store")

    def s(*args):
        return sh(strata, "--root", store, *args)

    def timed(*args):
        t = time.perf_counter()
        s(*args)
        return time.perf_counter() - t

    rows = []
    try:
        s("import", busybox_tar(work), "busybox")
        for drv in a.drivers.split(","):
            for _ in range(3):  # warm the page cache
                s("run", "--rm", "--driver", drv, "busybox", "true")
            lat = sorted(timed("run", "--rm", "--driver", drv, "busybox", "true") for _ in range(a.runs))
            row = {
                "driver": drv,
                "p50_ms": nearest_rank(lat, 50) * 1000,
                "p90_ms": nearest_rank(lat, 90) * 1000,
            }
            # The seed scenario.
            names = [f"seed-{drv}-{i}" for i in range(10)]
            t = time.perf_counter()
            for n in names:
                s("run", "--name", n, "--driver", drv, "busybox",
                  "dd", "if=/dev/urandom", "of=/data.bin", "bs=64k", "count=1")
            row["start10_s"] = time.perf_counter() - t
            ids = {n: json.loads(s("inspect", n))[0]["Id"] for n in names}
            uppers = [os.path.join(store, "containers", ids[n], "upper") for n in names]
            row["upper_kib"] = [du_kib(u) for u in uppers]
            t = time.perf_counter()
            for n in names:
                s("commit", n, f"img-{n}")
            row["commit10_s"] = time.perf_counter() - t
            layers = []
            for n in names:
                hexid = json.loads(s("inspect", f"img-{n}"))[0]["RootFS"]["Layers"][-1].split(":")[1]
                d = os.path.join(store, "layers", hexid)
                layers.append((du_kib(d), du_kib(d + ".tar")))
            row["layer_kib"] = layers
            t = time.perf_counter()
            for n in names:
                s("run", "--name", f"from-{n}", "--driver", drv, f"img-{n}",
                  "dd", "if=/data.bin", "of=/dev/null", "bs=64k")
            row["from10_s"] = time.perf_counter() - t
            ids2 = [json.loads(s("inspect", f"from-{n}"))[0]["Id"] for n in names]
            row["from_upper_kib"] = [du_kib(os.path.join(store, "containers", i, "upper")) for i in ids2]
            rows.append(row)
    finally:
        for line in s("ps", "-a", "-q").split():
            subprocess.run([strata, "--root", store, "rm", "-f", line], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    def span(v):
        return f"{min(v)}" if min(v) == max(v) else f"{min(v)}-{max(v)}"

    print(f"| | {' | '.join(r['driver'] for r in rows)} |")
    print(f"|---|{'---|' * len(rows)}")
    lines = [
        (f"`run --rm busybox true`, median of {a.runs}", lambda r: f"{r['p50_ms']:.0f} ms"),
        (f"`run --rm busybox true`, p90 of {a.runs}", lambda r: f"{r['p90_ms']:.0f} ms"),
        ("10 containers writing 64 KiB (dd), one after another", lambda r: f"{r['start10_s']:.2f} s"),
        ("commit each of the 10", lambda r: f"{r['commit10_s']:.2f} s"),
        ("10 containers from the commits (reading the 64 KiB)", lambda r: f"{r['from10_s']:.2f} s"),
        ("disk per writing container (du of its upper)", lambda r: f"{span(r['upper_kib'])} KiB"),
        ("disk per committed layer: extracted dir + layer tar",
         lambda r: f"{span([d for d, _ in r['layer_kib']])} + {span([t for _, t in r['layer_kib']])} KiB"),
        ("disk per container run from a commit (du of its upper)", lambda r: f"{span(r['from_upper_kib'])} KiB"),
    ]
    for label, f in lines:
        print(f"| {label} | {' | '.join(f(r) for r in rows)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
