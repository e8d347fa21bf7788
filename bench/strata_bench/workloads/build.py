"""Issue 18: `build` of one multi-step Dockerfile on an offline Debian-ish base (busybox,
the host's dpkg, a 256 MiB /data/big.img of real data; see debbase.py): COPY ~10 .debs in,
RUN dpkg -i of them, RUN creating/deleting/renaming files (some from lower layers), RUN dd
of 4 KiB into the big file (conv=notrunc), a late COPY of a small file, a final RUN.
Per peer, fresh store each run: cold build, rebuild with everything cached, rebuild after
changing the late file; the size of the layer the big-file step produced (`history`) and
the store growth of the cold build (du -skx). Peers: strata build --driver fuse/overlay,
podman build with fuse-overlayfs as mount_program and with the kernel's overlayfs."""
import glob
import json
import os
import re
import shutil

from .. import debbase
from ..runtimes import Podman, StrataCli, strata_runtime_missing
from ..sysutil import CommandError, du_kib, have, sh, timed

TITLE = "build: cold, cached, after a late change; big-file step layer; store growth"
BASE = "bench-debbase"
TAG = "bench-built"
REF = "podman (overlay)"
COLS = ["strata (fuse)", "strata (overlay)", "podman (fuse-overlayfs)", REF]
MARK = "conv=notrunc"  # picks the big-file step out of `history`

DOCKERFILE = """FROM {base}
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /debs /work /late
COPY debs/ /debs/
RUN dpkg -i --force-depends /debs/*.deb > /work/dpkg.log 2>&1 || {{ tail -5 /work/dpkg.log; \
exit 1; }}; dpkg -l | grep -c '^ii'
RUN set -e; mkdir -p /work/new; i=0; while [ $i -lt 200 ]; do echo $i > /work/new/f$i; \
i=$((i+1)); done; rm -rf /base/gone /work/new/f1 /debs/{first}; mv /base/moved /base/renamed; \
mv /base/keep/f000 /base/keep/f000.renamed; echo changed >> /base/keep/f001; \
mv /work/new/f2 /work/f2.moved
RUN dd if=/dev/urandom of=/data/big.img bs=4k count=1 seek={seek} {mark} 2>/dev/null && sync
COPY late.txt /late/late.txt
RUN cat /late/late.txt > /late/copy && ls /data /base /late > /late/listing
"""

_UNITS = {"b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "tb": 1000 ** 4,
          "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "k": 1000, "m": 1000 ** 2,
          "g": 1000 ** 3}


def parse_size(text):
    """'4.102kB' / '4.1 kB' / '4096' / '1.05MB' -> bytes (docker sizes are decimal)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", text)
    if not m:
        raise ValueError(f"size {text!r}")
    unit = m.group(2).lower() or "b"
    if unit not in _UNITS:
        raise ValueError(f"size unit {text!r}")
    return float(m.group(1)) * _UNITS[unit]


def step_kib(r, image):
    """KiB of the layer whose CREATED BY names MARK, from `history` (one line per layer)."""
    out = sh(r.history(image), timeout=120).stdout
    if out.lstrip().startswith("["):  # podman's json: exact sizes
        for row in json.loads(out):
            by = row.get("CreatedBy") or row.get("created_by") or ""
            if MARK in by and "dd if=" in by:
                return int(row.get("size", row.get("Size", 0))) / 1024
    for line in out.splitlines():
        size, _, by = line.partition("\t")
        if MARK in by and "dd if=" in by:
            return parse_size(size) / 1024
    raise ValueError(f"no layer with {MARK!r} in `history {image}`")


def strata_step_disk_kib(r, image):
    """KiB on disk (du -skc) of the store files of the layer made by the MARK step: the
    layer's files `layers/HEX*` named by `inspect` (GraphDriver.Data.Layers, in the order
    of the non-empty History entries)."""
    d = json.loads(sh(r.argv("inspect", image), timeout=120, quiet=True).stdout)
    d = d[0] if isinstance(d, list) else d
    hist = [h for h in d.get("History") or [] if not h.get("empty_layer")]
    layers = ((d.get("GraphDriver") or {}).get("Data") or {}).get("Layers") or []
    if len(hist) != len(layers):
        raise ValueError(f"inspect {image}: {len(hist)} history entries, {len(layers)} layers")
    for h, layer in zip(hist, layers):
        by = h.get("created_by") or ""
        if MARK in by and "dd if=" in by:
            paths = glob.glob(f"{layer['Dir']}*")
            out = sh(["du", "-skxc", *paths], timeout=600).stdout.split()
            return float(out[-2])  # the "total" line
    raise ValueError(f"no layer with {MARK!r} in `inspect {image}`")


def make_context(d, debs_dir, big_bytes):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(f"{d}/debs")
    names = sorted(os.listdir(debs_dir))
    for n in names:
        shutil.copy2(f"{debs_dir}/{n}", f"{d}/debs/{n}")
    seek = big_bytes // 4096 // 2
    with open(f"{d}/Dockerfile", "w") as f:
        f.write(DOCKERFILE.format(base=BASE, seek=seek, mark=MARK, first=names[0]))
    with open(f"{d}/late.txt", "w") as f:
        f.write("late file, first version\n")


def scenario(r, tar, ctx_dir, m):
    r.setup(tar, BASE)
    out = {}
    try:
        before = du_kib(r.disk_root())
        out[m["cold"]] = timed(r.build(ctx_dir, TAG), timeout=1800)
        out[m["growth"]] = (du_kib(r.disk_root()) - before) / 1024
        out[m["cached"]] = timed(r.build(ctx_dir, TAG), timeout=600)
        with open(f"{ctx_dir}/late.txt", "w") as f:
            f.write("late file, second version\n")
        out[m["late"]] = timed(r.build(ctx_dir, TAG), timeout=1800)
        out[m["layer"]] = step_kib(r, TAG)
        # podman's diff dir holds the copied-up file: its history size is its disk use
        out[m["disk"]] = strata_step_disk_kib(r, TAG) if isinstance(r, StrataCli) \
            else out[m["layer"]]
    finally:
        try:
            r.teardown()
        except CommandError:
            pass
    return out


def runtimes(ctx):
    out, missing = [], {}
    why = strata_runtime_missing(ctx.strata_bin)
    if not why and "--driver" not in (sh([ctx.strata_bin, "build", "--help"], check=False,
                                         timeout=20).stdout):
        why = "not available yet (`strata build --help` has no --driver)"
    for driver in ("fuse", "overlay"):
        if why:
            missing[f"strata ({driver})"] = why
        else:
            out.append(StrataCli(ctx.strata_bin, ctx.scratch("build", f"strata-{driver}"),
                                 driver))
    for name, prog in (("podman (fuse-overlayfs)", "/usr/bin/fuse-overlayfs"), (REF, None)):
        if not have("podman"):
            missing[name] = "podman not installed"
        elif prog and ctx.quick:
            missing[name] = "skipped in --quick (slow; same code as podman (overlay))"
        elif prog and not os.path.exists(prog):
            missing[name] = f"{prog} missing"
        else:
            slug = "pm-fo" if prog else "pm-ov"  # podman: runroot path ≤ 50 chars
            out.append(Podman(ctx.scratch("build", slug), prog, name))
    return out, missing


def add_ratios(of, into):
    """into[col][i] = of[col][i] / of[REF][i] for each run i (None when either is missing)."""
    ref = of.samples.get(REF) or []
    for c in COLS:
        for a, b in zip(of.samples.get(c) or [], ref):
            into.add(c, a / b if a is not None and b else None)
        if c in of.notes and not any(of.samples.get(c) or []):
            into.fail(c, of.notes[c])


def run(ctx):
    rts, missing = runtimes(ctx)
    big = ctx.sizes.big_bytes // 4  # 256 MiB full, 2 MiB --quick
    spec = [
        ("cold", "cold build (fresh store, base imported)", "s"),
        ("cached", "rebuild, every step cached", "s"),
        ("late", "rebuild after changing the file of the late COPY", "s"),
        ("layer", f"layer of the step writing 4 KiB into the {big >> 20} MiB file, "
                  "size `history` reports", "KiB"),
        ("disk", "that layer on disk (strata: du of its store files; podman: as above, "
                 "its diff holds the copied-up file)", "KiB"),
        ("growth", "store growth of the cold build (du -skx)", "MiB"),
    ]
    m = {k: ctx.metric("build", name, unit, columns=COLS, key=f"build.{k}")
         for k, name, unit in spec}
    for c, why in missing.items():
        for x in m.values():
            x.fail(c, why)
    root = ctx.tree_dir("build")
    tar = debbase.base_tar(f"{root}/base", big)
    debs_dir, how = debbase.debs(f"{root}/debs", ctx.quick)
    m["cold"].name += f"; {how}"
    for _, r in ctx.rounds(rts):
        slug = re.sub(r"[^a-z0-9]+", "-", r.name).strip("-")
        ctx_dir = ctx.scratch("build", f"context-{slug}")
        make_context(ctx_dir, debs_dir, big)
        ctx.measure(r.name, list(m.values()), lambda r=r, d=ctx_dir: scenario(r, tar, d, m),
                    "build")
    rel = {}
    for k in ("cold", "late"):
        rel[k] = ctx.metric("build", f"{m[k].name.split(';')[0]} ÷ {REF}'s", "x", columns=COLS,
                            key=f"build.{k}_rel")
        add_ratios(m[k], rel[k])
    return [m[k] for k, _, _ in spec] + list(rel.values())
