"""Published → written latency of delivered events: recent percentiles and a Prometheus Histogram.

`/api/events/stats` reports p50, p99 and max of the most recent samples
(CONTRACT §3), kept in a ring: recording is one store, and the percentiles are
sorted out only when someone asks. `/metrics` exposes the same samples as a
Histogram, which, unlike quantiles, adds up across streamers. Both are fed
once per event of a key's batch, not once per client.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Protocol

from prometheus_client import Histogram

LATENCY_SAMPLES = 4096
# 0.1 ms .. 10 s: a healthy stack sits at the low end, a stalled one shows at the top.
BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Published(Protocol):
    """Anything that says when it was published (a bus event)."""

    @property
    def published_ns(self) -> int: ...


class LatencyReservoir:
    """The last LATENCY_SAMPLES latencies in milliseconds; p50, p99 and max of them on demand."""

    __slots__ = ("_count", "_next", "_ring")

    def __init__(self, size: int = LATENCY_SAMPLES) -> None:
        self._ring = array("d", bytes(8 * size))
        self._next = 0
        self._count = 0

    def record(self, milliseconds: float) -> None:
        """Keep one sample, overwriting the oldest."""
        ring = self._ring
        ring[self._next] = milliseconds
        self._next = (self._next + 1) % len(ring)
        self._count += 1

    def summary(self) -> dict[str, float | None]:
        """p50, p99 and max of the kept samples (None before the first)."""
        kept = sorted(self._ring[: min(self._count, len(self._ring))])
        if not kept:
            return {"p50": None, "p99": None, "max": None}
        last = len(kept) - 1
        return {
            "p50": round(kept[int(last * 0.50)], 3),
            "p99": round(kept[int(last * 0.99)], 3),
            "max": round(kept[last], 3),
        }


class Latency:
    """The delivery latency of one streamer: a reservoir for the stats, a Histogram for /metrics."""

    def __init__(self, prefix: str = "tradestream_streamer") -> None:
        self.recent = LatencyReservoir()
        # Registered by whoever owns the registry (Services); one observe costs about 0.9 us, once per event.
        self.histogram = Histogram(
            f"{prefix}_delivery_latency_seconds", "Published-to-written latency of delivered events",
            buckets=BUCKETS_S, registry=None,
        )

    def record(self, events: Sequence[Published], now_ns: int) -> float:
        """Record each event written at `now_ns`; the last one's latency in milliseconds."""
        keep, observe = self.recent.record, self.histogram.observe
        milliseconds = 0.0
        for event in events:
            milliseconds = (now_ns - event.published_ns) / 1e6
            keep(milliseconds)
            observe(milliseconds / 1e3)
        return milliseconds

    def summary(self) -> dict[str, float | None]:
        """p50, p99 and max of the recent samples, in milliseconds."""
        return self.recent.summary()
