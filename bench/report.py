"""Accounting and reporting: seq loss/duplicates, percentiles, the run object, table, JSON, plot."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson

from bench import stages

PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999))
RUN_KEYS = (
    "connections", "keys", "rate", "duration_s", "deliveries_per_s", "latency_ms", "lost", "duplicated",
    "slow_consumer_disconnects", "streamer_cpu_us_per_delivery", "streamer_rss_kib_per_connection", "connect_s",
)
# Since issue 13, after those of the contract: where the time went and how busy the machine was.
DIAGNOSTIC_KEYS = ("stages_ms", "streamer_cpu_share", "streamer_runqueue_wait", "load_average", "loadgen_cpu_share",
                   "arrival_latency_ms", "loadgen_cpu_us_per_read")
LATENCY_KEYS = (*tuple(name for name, _ in PERCENTILES), "max")


class SeqTracker:
    """Counts what one stream missed or received twice, from the seq of its `id:` lines.

    The contract delivers a key's events in seq order, so a seq below the next
    expected one is a duplicate and a jump above it is a gap; O(1) per event.
    """

    __slots__ = ("after", "duplicated", "gaps", "next_seq", "received")

    def __init__(self, after: int) -> None:
        self.after = after
        self.next_seq = after + 1
        self.gaps = 0
        self.duplicated = 0
        self.received = 0

    def see(self, seq: int) -> None:
        """Account for one received event."""
        self.received += 1
        if seq == self.next_seq:
            self.next_seq += 1
        elif seq < self.next_seq:
            self.duplicated += 1
        else:
            self.gaps += seq - self.next_seq
            self.next_seq = seq + 1

    def lost(self, published: int) -> int:
        """Events of the `published` ones after `after` that never arrived."""
        tail = max(0, self.after + published - (self.next_seq - 1))
        return self.gaps + tail


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 for none)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def latency_summary(latencies_us: Iterable[int]) -> dict[str, float]:
    """p50/p90/p99/p999/max in milliseconds of latencies given in microseconds."""
    ordered = sorted(latencies_us)
    summary = {name: round(percentile(ordered, q) / 1000, 3) for name, q in PERCENTILES}
    summary["max"] = round(ordered[-1] / 1000, 3) if ordered else 0.0
    return summary


def stage_row(values_us: Sequence[int]) -> dict[str, Any]:
    """A stage of the load generator's own, as the streamer's stages are given: {count, p50, p99, p999, max} in ms."""
    summary = latency_summary(values_us)
    return {"count": len(values_us), **{key: summary[key] for key in ("p50", "p99", "p999", "max")}}


@dataclass
class RunResult:
    """One measured run, convertible to the JSON object of CONTRACT section 7."""

    connections: int
    keys: int
    rate: float
    duration_s: float
    deliveries_per_s: float
    latency_ms: dict[str, float]
    lost: int
    duplicated: int
    slow_consumer_disconnects: int
    streamer_cpu_us_per_delivery: float | None
    rss_idle_kib: float | None
    rss_loaded_kib: float | None
    connect_s: float
    stages: dict[str, Any] = field(default_factory=dict)  # bench/stages.py breakdown
    streamer_cpu_share: float | None = None  # of one core, while publishing and draining
    load_average: float | None = None  # 1-minute, when publishing began
    streamer_runqueue_wait: float | None = None  # share of the time the streamer was runnable but another had its core
    loadgen_cpu_share: float | None = None  # the load generators' CPU (all processes), of one core, while waiting for events
    # publish → arrived in the client's kernel (SO_TIMESTAMPNS of each read): latency_ms without the load generator's turn
    arrival_latency_ms: dict[str, float] | None = None
    loadgen_cpu_us_per_read: float | None = None  # the load generators' CPU over their reads, while waiting for events
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The keys of CONTRACT section 7 for one run, in its order (the diagnostic ones last)."""
        return {
            "connections": self.connections,
            "keys": self.keys,
            "rate": self.rate,
            "duration_s": self.duration_s,
            "deliveries_per_s": round(self.deliveries_per_s, 1),
            "latency_ms": {key: self.latency_ms[key] for key in LATENCY_KEYS},
            "lost": self.lost,
            "duplicated": self.duplicated,
            "slow_consumer_disconnects": self.slow_consumer_disconnects,
            "streamer_cpu_us_per_delivery": self.streamer_cpu_us_per_delivery,
            "streamer_rss_kib_per_connection": {"idle": self.rss_idle_kib, "loaded": self.rss_loaded_kib},
            "connect_s": round(self.connect_s, 3),
            "stages_ms": self.stages,
            "streamer_cpu_share": self.streamer_cpu_share,
            "streamer_runqueue_wait": self.streamer_runqueue_wait,
            "load_average": self.load_average,
            "loadgen_cpu_share": self.loadgen_cpu_share,
            "arrival_latency_ms": ({key: self.arrival_latency_ms[key] for key in LATENCY_KEYS}
                                   if self.arrival_latency_ms else None),
            "loadgen_cpu_us_per_read": self.loadgen_cpu_us_per_read,
        }

    def passes(self, expected_deliveries: int) -> bool:
        """The --find-max criterion: >= 99.9% delivered, no stream lost, p99 <= 50 ms."""
        delivered = expected_deliveries - self.lost
        return (
            delivered >= 0.999 * expected_deliveries
            and self.slow_consumer_disconnects == 0
            and not self.extra.get("streams_closed", 0)
            and self.latency_ms["p99"] <= 50.0
        )


def find_max_json(max_rate: float, at_half: RunResult, at_90: RunResult) -> dict[str, Any]:
    """The --find-max object: the half-rate run's keys plus max_rate, at_half and at_90."""
    return {**at_half.to_json(), "max_rate": max_rate, "at_half": at_half.to_json(), "at_90": at_90.to_json()}


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _fmt_latency(summary: Mapping[str, float] | None) -> str:
    return "n/a" if not summary else f"{summary['p50']} / {summary['p99']} / {summary['p999']}"


def table(run: RunResult, title: str = "run") -> str:
    """The run as an aligned two-column table for the terminal."""
    lat = run.latency_ms
    rows = [
        ("connections / keys", f"{run.connections:,} / {run.keys:,} ({run.connections // max(1, run.keys)} per key)"),
        ("rate (events/s), duration", f"{_fmt(run.rate)} for {_fmt(run.duration_s)} s"),
        ("deliveries/s", _fmt(run.deliveries_per_s)),
        ("latency ms p50/p90/p99", f"{lat['p50']} / {lat['p90']} / {lat['p99']}"),
        ("latency ms p99.9/max", f"{lat['p999']} / {lat['max']}"),
        ("publish → arrived ms p50/p99/p99.9", _fmt_latency(run.arrival_latency_ms)),
        ("lost / duplicated", f"{run.lost:,} / {run.duplicated:,}"),
        ("slow-consumer disconnects", _fmt(run.slow_consumer_disconnects)),
        ("streamer CPU µs/delivery", _fmt(run.streamer_cpu_us_per_delivery)),
        ("streamer RSS KiB/conn idle", _fmt(run.rss_idle_kib)),
        ("streamer RSS KiB/conn loaded", _fmt(run.rss_loaded_kib)),
        ("connect time (s)", _fmt(run.connect_s)),
        ("streamer core busy", _fmt(run.streamer_cpu_share)),
        ("streamer waiting for a core", _fmt(run.streamer_runqueue_wait)),
        ("load generator core busy", _fmt(run.loadgen_cpu_share)),
        ("load generator CPU µs/read", _fmt(run.loadgen_cpu_us_per_read)),
        ("load average (1 min)", _fmt(run.load_average)),
    ]
    rows += [(name, _fmt(value)) for name, value in run.extra.items() if not isinstance(value, (list, dict))]
    width = max(len(name) for name, _ in rows)
    lines = [f"── {title} " + "─" * max(0, width + 20 - len(title))]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    if run.stages:
        lines += ["", stages.table(run.stages, lat, run.arrival_latency_ms)]
    return "\n".join(lines)


def write_json(path: str, obj: Mapping[str, Any], out: TextIO | None = None) -> None:
    """Write the result object to `path` ('-' for `out`)."""
    text = orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n"
    if path == "-" and out is not None:
        out.write(text)
        return
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


NINES_TICKS = ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9"), (0.9999, "p99.99"))


def nines(fraction: float) -> float:
    """A CDF fraction on an axis where each "nine" takes the same room: 0.9 → 1, 0.99 → 2."""
    return -math.log10(max(1e-9, 1.0 - fraction))


def full_seconds(per_second: Mapping[int, int]) -> list[tuple[int, int]]:
    """(second from the first, deliveries) without the first and last seconds, which a run covers only in part."""
    seconds = sorted(per_second)
    inner = seconds[1:-1] if len(seconds) > 2 else seconds
    return [(s - seconds[0], per_second[s]) for s in inner]


def ms_axis(axis: Any) -> None:
    """A log axis of milliseconds labelled 0.1, 1, 10, 100 rather than powers of ten."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))


def plot(path: str, latencies_us: Sequence[int], per_second: Mapping[int, int], title: str) -> None:
    """Latency histogram, latency by percentile, and deliveries per full second, as a PNG (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(v / 1000 for v in latencies_us) or [0.0]
    fig, (hist_ax, cdf_ax, rate_ax) = plt.subplots(1, 3, figsize=(12, 3.4))
    hist_ax.hist(ordered, bins=100, color="#4477aa")
    hist_ax.set(xlabel="publish → receive (ms)", ylabel="deliveries", yscale="log", title="latency histogram")
    count = len(ordered)
    step = max(1, count // 4000)
    picks = [*range(0, count, step), count - 1]
    cdf_ax.plot([nines(i / count) for i in picks], [max(ordered[i], 1e-3) for i in picks], color="#228833")
    cdf_ax.set(xlabel="percentile", ylabel="ms (log)", yscale="log", title="latency by percentile")
    ms_axis(cdf_ax.yaxis)
    cdf_ax.set_xticks([nines(q) for q, _ in NINES_TICKS], [label for _, label in NINES_TICKS])
    cdf_ax.set_xlim(0, nines(0.9999))
    cdf_ax.grid(True, which="both", alpha=0.3)
    points = full_seconds(per_second)
    if points:
        rate_ax.plot([s for s, _ in points], [n for _, n in points], marker=".", color="#aa3377")
    rate_ax.set(xlabel="s (full seconds only)", ylabel="deliveries/s", title="deliveries per second")
    rate_ax.set_ylim(bottom=0)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
