"""Accounting and reporting: seq loss/duplicates, percentiles, the run object, table, JSON, plot."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson

PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999))
RUN_KEYS = (
    "connections", "keys", "rate", "duration_s", "deliveries_per_s", "latency_ms", "lost", "duplicated",
    "slow_consumer_disconnects", "streamer_cpu_us_per_delivery", "streamer_rss_kib_per_connection", "connect_s",
)
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
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Exactly the keys of CONTRACT section 7 for one run."""
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


def table(run: RunResult, title: str = "run") -> str:
    """The run as an aligned two-column table for the terminal."""
    lat = run.latency_ms
    rows = [
        ("connections / keys", f"{run.connections:,} / {run.keys:,} ({run.connections // max(1, run.keys)} per key)"),
        ("rate (events/s), duration", f"{_fmt(run.rate)} for {_fmt(run.duration_s)} s"),
        ("deliveries/s", _fmt(run.deliveries_per_s)),
        ("latency ms p50/p90/p99", f"{lat['p50']} / {lat['p90']} / {lat['p99']}"),
        ("latency ms p99.9/max", f"{lat['p999']} / {lat['max']}"),
        ("lost / duplicated", f"{run.lost:,} / {run.duplicated:,}"),
        ("slow-consumer disconnects", _fmt(run.slow_consumer_disconnects)),
        ("streamer CPU µs/delivery", _fmt(run.streamer_cpu_us_per_delivery)),
        ("streamer RSS KiB/conn idle", _fmt(run.rss_idle_kib)),
        ("streamer RSS KiB/conn loaded", _fmt(run.rss_loaded_kib)),
        ("connect time (s)", _fmt(run.connect_s)),
    ]
    rows += [(name, _fmt(value)) for name, value in run.extra.items() if not isinstance(value, (list, dict))]
    width = max(len(name) for name, _ in rows)
    lines = [f"── {title} " + "─" * max(0, width + 20 - len(title))]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)


def write_json(path: str, obj: Mapping[str, Any], out: TextIO | None = None) -> None:
    """Write the result object to `path` ('-' for `out`)."""
    text = orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n"
    if path == "-" and out is not None:
        out.write(text)
        return
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def plot(path: str, latencies_us: Sequence[int], per_second: Mapping[int, int], title: str) -> None:
    """Latency histogram and CDF, and deliveries per second over time, as a PNG (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(v / 1000 for v in latencies_us) or [0.0]
    fig, (hist_ax, cdf_ax, rate_ax) = plt.subplots(1, 3, figsize=(13, 3.6))
    hist_ax.hist(ordered, bins=100, color="#4477aa")
    hist_ax.set(xlabel="publish → receive (ms)", ylabel="deliveries", yscale="log", title="latency histogram")
    step = max(1, len(ordered) // 2000)
    xs = [*ordered[::step], ordered[-1]]
    ys = [i * step / len(ordered) for i in range(len(xs) - 1)] + [1.0]
    cdf_ax.plot(xs, ys, color="#228833")
    cdf_ax.set(xlabel="ms (log)", ylabel="fraction", xscale="log", title="latency CDF")
    cdf_ax.grid(True, which="both", alpha=0.3)
    if per_second:
        start = min(per_second)
        seconds = sorted(per_second)
        rate_ax.plot([s - start for s in seconds], [per_second[s] for s in seconds], marker=".", color="#aa3377")
    rate_ax.set(xlabel="s", ylabel="deliveries/s", title="deliveries per second")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
