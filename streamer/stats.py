"""The streamer's counters, its delivery latency and their Prometheus exposition.

Counters are plain integers bumped on the event loop (once per batch, not per
client where it can be helped). Latency (published → written) lives in a ring
of the most recent samples: recording is one store, and percentiles are sorted
out only when someone asks. `/metrics` reads the same numbers through a custom
Collector, so nothing is counted twice.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from streamer.hub import Hub

LATENCY_SAMPLES = 4096


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


@dataclass(slots=True)
class StreamerStats:
    """Counters of one streamer process."""

    events_received: int = 0
    events_delivered: int = 0
    slow_consumer_disconnects: int = 0
    resyncs: int = 0
    connects: int = 0
    disconnects: int = 0
    forced_disconnects: int = 0
    rejected_streams: int = 0
    heartbeats: int = 0
    malformed_events: int = 0
    rechecks: int = 0
    control_publish_failures: int = 0
    latency: LatencyReservoir = field(default_factory=LatencyReservoir)


def stats_snapshot(hub: Hub, per_key: bool = True) -> dict[str, Any]:
    """The `/api/events/stats` map of a hub; with `per_key`, also connections and lag per key."""
    stats, bus = hub.stats, hub.subscriber.stats
    snapshot: dict[str, Any] = {
        "total_connections": hub.client_count,
        "key_count": len(hub.channels),
        "events_received": stats.events_received,
        "events_delivered": stats.events_delivered,
        "slow_consumer_disconnects": stats.slow_consumer_disconnects,
        "gaps_detected": bus.gaps_detected,
        "gaps_recovered": bus.gaps_recovered,
        "resyncs": stats.resyncs,
        "latency_ms": stats.latency.summary(),
        "connects": stats.connects,
        "disconnects": stats.disconnects,
        "forced_disconnects": stats.forced_disconnects,
        "rejected_streams": stats.rejected_streams,
        "heartbeats": stats.heartbeats,
        "malformed_events": stats.malformed_events,
        "rechecks": stats.rechecks,
        "control_publish_failures": stats.control_publish_failures,
        "broker": "up" if hub.subscriber.broker_up else "down",
        "bus": asdict(bus),
    }
    if per_key:
        snapshot["connections_by_key"] = {str(key): len(ch.members) for key, ch in hub.channels.items()}
        snapshot["keys"] = {str(key): ch.describe() for key, ch in hub.channels.items()}
    return snapshot


# name, help, key in the stats snapshot
_COUNTERS = (
    ("events_received", "Bus events received for watched keys", "events_received"),
    ("events_delivered", "Event frames written to clients", "events_delivered"),
    ("slow_consumer_disconnects", "Clients dropped for falling behind their buffer", "slow_consumer_disconnects"),
    ("gaps_detected", "Sequence gaps noticed on the bus", "gaps_detected"),
    ("gaps_recovered", "Sequence gaps filled from the broker's history", "gaps_recovered"),
    ("resyncs", "resync events sent to clients", "resyncs"),
    ("stream_connects", "Streams opened", "connects"),
    ("stream_disconnects", "Streams closed", "disconnects"),
    ("forced_disconnects", "Streams ended with force_disconnect", "forced_disconnects"),
)


class StatsCollector(Collector):
    """Exposes a stats snapshot (the `/api/events/stats` map) in Prometheus form at scrape time."""

    def __init__(self, snapshot: Callable[[], Mapping[str, Any]], prefix: str = "tradestream_streamer") -> None:
        # `snapshot` needs no per-key detail: a scrape stays O(1) in the number of clients.
        self.snapshot = snapshot
        self.prefix = prefix

    def collect(self) -> Iterator[Metric]:
        stats = self.snapshot()
        p = self.prefix
        for name, text, key in _COUNTERS:
            yield CounterMetricFamily(f"{p}_{name}", text, value=stats[key])
        yield GaugeMetricFamily(f"{p}_connections", "Open SSE streams", value=stats["total_connections"])
        yield GaugeMetricFamily(f"{p}_keys", "Stream keys with at least one client", value=stats["key_count"])
        yield GaugeMetricFamily(f"{p}_broker_up", "1 while the broker answers heartbeats", value=stats["broker"] == "up")
        latency = GaugeMetricFamily(
            f"{p}_latency_ms", "Published-to-written latency of recent events", labels=["quantile"]
        )
        for label, key in (("0.5", "p50"), ("0.99", "p99"), ("1", "max")):
            value = stats["latency_ms"][key]
            latency.add_metric([label], float("nan") if value is None else value)
        yield latency
