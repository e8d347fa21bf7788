"""Turning metrics into the terminal table and bench/RESULTS.md."""
from .stats import cell, fmt, median, ratio, ratio_cell

# BRIEF §6 targets: (metric key, kind, bound, peer, text). kind "abs": median <= bound;
# "ratio": median of per-run ratios against `peer` <= bound; "diff": median minus the
# peer's median <= bound.
TARGETS = [
    ("bigwrite.latency", "abs", 5, None, "< 5 ms"),
    ("bigwrite.upper", "abs", 72, None, "< 72 KiB upper"),
    ("meta.cold", "ratio", 1.2, "overlayfs", "≤ 1.2x overlayfs"),
    ("meta.untar", "ratio", 1.2, "overlayfs", "≤ 1.2x overlayfs"),
    ("meta.rm", "ratio", 1.5, "overlayfs", "≤ 1.5x overlayfs"),
    ("meta.find_cold", "ratio", 1.5, "overlayfs", "≤ 1.5x overlayfs (issue 19)"),
    ("meta.find_warm", "ratio", 1.1, "overlayfs", "≤ 1.1x overlayfs (issue 19)"),
    ("read.lower", "ratio", 1.1, "overlayfs", "≤ 1.1x overlayfs"),
    ("start", "abs", 20, None, "≤ 20 ms on the fuse driver"),
    ("netstart", "diff", 5, "strata (--net host)", "bridge ≤ 5 ms over --net host (issue 17)"),
    ("seed.d_write", "abs", 72, None, "≤ 72 KiB each"),
    ("chain.cold", "ratio", 1.2, "strata, one delta", "≤ 1.2x one delta (issue 14)"),
    ("chain.warm", "ratio", 1.2, "strata, one delta", "≤ 1.2x one delta (issue 14)"),
    ("chain.direct", "ratio", 1.2, "strata, one delta", "≤ 1.2x one delta (issue 14)"),
    ("build.cached", "abs", 0.5, None, "cached rebuild ≤ 0.5 s (issue 18)"),
    ("build.cold", "ratio", 1.3, "podman (overlay)", "≤ 1.3x podman kernel overlay (issue 18)"),
    ("build.disk", "abs", 1024, None, "≤ 1 MiB (issue 18)"),
]


def groups(metrics):
    out = {}
    for m in metrics:
        out.setdefault(m.workload, []).append(m)
    return out


def _has_numbers(m, c):
    return any(x is not None for x in m.samples.get(c) or [])


def _rows(ms, short=False):
    """(header, rows, footnotes); short=True puts 'n/a' in cells and the reasons below."""
    cols = []
    for m in ms:
        for c in m.columns:
            if c not in cols:
                cols.append(c)
    subject = ms[0].subject
    peers = [c for c in cols if c != subject]
    header = ["metric", "unit", *cols, *[f"{subject} / {p}" for p in peers]]
    rows, foot = [], []
    for m in ms:
        r = [m.name, m.unit + (" ↑" if m.better == "higher" else "")]
        for c in cols:
            if c not in m.columns:
                r.append("")
            elif short and not _has_numbers(m, c):
                r.append("n/a")
                why = f"{c}: {m.notes.get(c, 'no number')}"
                if why not in foot:
                    foot.append(why)
            else:
                r.append(cell(m, c))
        r += [ratio_cell(m, p) if p in m.columns else "" for p in peers]
        rows.append(r)
    return header, rows, foot


def markdown_table(header, rows):
    esc = [[c.replace("|", "\\|") for c in r] for r in [header] + rows]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


def text_table(header, rows, width=40):
    rows = [[c if len(c) <= width else c[:width - 1] + "…" for c in r] for r in [header] + rows]
    w = [max(len(r[i]) for r in rows) for i in range(len(header))]
    out = []
    for j, r in enumerate(rows):
        out.append("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
        if j == 0:
            out.append("  ".join("-" * x for x in w))
    return "\n".join(out)


def target_rows(metrics):
    by_key = {m.key: m for m in metrics if m.key}
    rows = []
    for key, kind, bound, peer, text in TARGETS:
        m = by_key.get(key)
        if not m:
            continue
        subj = m.subject
        if kind == "abs":
            xs = [x for x in m.samples.get(subj) or [] if x is not None]
            v = median(xs)
            got = f"{fmt(v, m.unit)} {m.unit}" if v is not None else m.notes.get(subj, "—")
        elif kind == "diff":
            a = median([x for x in m.samples.get(subj) or [] if x is not None])
            b = median([x for x in m.samples.get(peer) or [] if x is not None])
            v = None if a is None or b is None else a - b
            got = f"+{fmt(v, m.unit)} {m.unit}" if v is not None else m.notes.get(subj, "—")
        else:
            v = ratio(m, peer)
            got = f"{v:.2f}x" if v is not None else m.notes.get(subj, "—")
        verdict = "—" if v is None else ("met" if v <= bound else "missed")
        rows.append([m.name, subj, text, got, verdict])
    return ["metric", "who", "target (BRIEF §6)", "measured", ""], rows


def slowest(metrics, n=5):
    """Metrics where the subject loses most against a peer (ratio normalised: >1 = slower),
    one line per metric (its worst peer)."""
    out = []
    for m in metrics:
        if m.unit == "KiB" or m.workload in ("memory", "tracing"):
            continue
        worst = None
        for p in m.columns[1:]:
            r = ratio(m, p)
            if r:
                bad = 1 / r if m.better == "higher" else r
                if worst is None or bad > worst[0]:
                    worst = (bad, m, p)
        if worst:
            out.append(worst)
    out.sort(key=lambda t: -t[0])
    return out[:n]


def slowest_lines(metrics):
    lines = []
    for bad, m, p in slowest(metrics):
        lines.append(f"- {m.workload}: {m.name}: {m.subject} is {bad:.2f}x slower than {p}"
                     if bad >= 1 else
                     f"- {m.workload}: {m.name}: {m.subject} is {1 / bad:.2f}x faster than {p}")
    return lines


def terminal(metrics, notes):
    parts = []
    for w, ms in groups(metrics).items():
        header, rows, foot = _rows(ms, short=True)
        parts.append(f"[{w}]\n" + text_table(header, rows)
                     + "".join(f"\n  n/a = {f}" for f in foot))
    lines = slowest_lines(metrics)
    if lines:
        parts.append("Slowest spots for strata (by ratio against a peer):\n" + "\n".join(lines))
    parts += notes
    return "\n\n".join(parts)


def markdown(metrics, facts, config, titles, durations, notes):
    out = ["# strata benchmark results", "",
           "Generated by `bench/run`; do not edit by hand. Numbers are medians over runs with",
           "the spread [min–max]; a ratio is strata/peer computed for each run pair, then the",
           "median of those (below 1 = strata faster for times, slower for ↑ metrics).", "",
           "## Where and when", ""]
    out += [f"- **{k}**: {v}" for k, v in facts.items()]
    out += [f"- **{k}**: {v}" for k, v in config.items()]
    out.append("")
    header, rows = target_rows(metrics)
    if rows:
        out += ["## Targets", "", markdown_table(header, rows), ""]
    lines = slowest_lines(metrics)
    if lines:
        out += ["## Slowest spots for strata", "", *lines, ""]
    for w, ms in groups(metrics).items():
        took = f" ({durations[w]:.0f} s)" if w in durations else ""
        out += [f"## {w}: {titles.get(w, '')}{took}", "", markdown_table(*_rows(ms)[:2]), ""]
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)
