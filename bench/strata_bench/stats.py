"""What one measured quantity looks like (samples per peer) and how it is summarised:
median, spread (min-max), and the ratio subject/peer computed per run pair, then its median."""
from dataclasses import dataclass, field
import statistics


@dataclass(eq=False)  # hashable by identity: workloads key values by Metric
class Metric:
    workload: str          # e.g. "bigwrite"
    name: str              # e.g. "4 KiB write latency"
    unit: str              # "s", "ms", "MiB/s", "IOPS", "KiB"
    columns: list          # peer names, subject first
    samples: dict = field(default_factory=dict)   # peer -> [float, ...] one per run
    notes: dict = field(default_factory=dict)     # peer -> why there is no number
    better: str = "lower"  # "lower" or "higher": which direction wins
    p90: bool = False      # also show the 90th percentile (container start)
    key: str = ""          # stable id the target table in report.py looks for

    @property
    def subject(self):
        return self.columns[0]

    def add(self, peer, value):
        self.samples.setdefault(peer, []).append(value)

    def fail(self, peer, why):
        self.notes[peer] = why


def median(xs):
    return statistics.median(xs) if xs else None


def percentile(xs, q):
    if not xs:
        return None
    s = sorted(xs)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def ratio(metric, peer):
    """Median over run pairs i of subject[i] / peer[i]; None when either side is missing."""
    a = metric.samples.get(metric.subject) or []
    b = metric.samples.get(peer) or []
    pairs = [x / y for x, y in zip(a, b) if x is not None and y not in (None, 0)]
    return median(pairs)


def fmt(v, unit=""):
    if v is None:
        return "—"
    if unit == "KiB" or unit == "IOPS" or abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def cell(metric, peer):
    """'median [min–max]' or the note saying why there is no number."""
    xs = [x for x in metric.samples.get(peer) or [] if x is not None]
    if not xs:
        return metric.notes.get(peer, "—")
    u = metric.unit
    text = fmt(median(xs), u)
    if metric.p90:
        text += f" (p90 {fmt(percentile(xs, 0.9), u)})"
    if len(xs) > 1:
        text += f" [{fmt(min(xs), u)}–{fmt(max(xs), u)}]"
    return text


def ratio_cell(metric, peer):
    r = ratio(metric, peer)
    if r is None:
        return "—"
    return f"{r:.2f}x"
