"""The streamer's counters and their Prometheus exposition.

Counters are plain integers bumped on the event loop (once per batch, not per
client where it can be helped). `/metrics` reads the stats snapshot (the
`/api/events/stats` map, built by Services) through a custom Collector, so
nothing is counted twice; the latency Histogram is registered beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamer.latency import Latency
from streamer.timings import Timings


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
    held_frames_dropped: int = 0
    streams_shed: int = 0
    latency: Latency = field(default_factory=Latency)
    timings: Timings = field(default_factory=Timings)

    def other_counters(self) -> dict[str, int]:
        """The counters the stats snapshot shows under their own names, after those of the contract."""
        return {name: getattr(self, name) for name in _OTHER_COUNTERS}


_OTHER_COUNTERS = (
    "connects", "disconnects", "forced_disconnects", "rejected_streams", "heartbeats",
    "malformed_events", "rechecks", "control_publish_failures", "held_frames_dropped", "streams_shed",
)


# name, help, key in the stats snapshot
_COUNTERS = (
    ("events_received", "Bus events received for watched keys", "events_received"),
    ("events_delivered", "Event frames written to clients", "events_delivered"),
    ("slow_consumer_disconnects", "Clients dropped for falling behind their buffer", "slow_consumer_disconnects"),
    ("gaps_detected", "Sequence gaps noticed on the bus", "gaps_detected"),
    ("gaps_recovered", "Sequence gaps filled from the broker's history", "gaps_recovered"),
    ("resyncs", "resync events sent to clients", "resyncs"),
    ("replay_resent", "Requests to the broker's history sent again, unanswered for a quarter of bus_timeout", "replay_resent"),
    ("stream_connects", "Streams opened", "connects"),
    ("stream_disconnects", "Streams closed", "disconnects"),
    ("forced_disconnects", "Streams ended with force_disconnect", "forced_disconnects"),
    ("held_frames_dropped", "Live frames a resuming stream could not hold during its replay (replayed again)", "held_frames_dropped"),
    ("rejected_streams", "Streams refused with 429: the user holds --max-streams-per-user across streamers", "rejected_streams"),
    ("streams_shed", "Streams closed because a race with another streamer let a user exceed the limit", "streams_shed"),
    ("login_refused_address", "Logins refused with 429: too many attempts from one client address", "login_refused_address"),
    ("login_refused_user", "Logins refused with 429: too many attempts for one username", "login_refused_user"),
    ("login_refused_busy", "Logins refused with 429: too many password checks already waiting", "login_refused_busy"),
    ("accept_failures", "accept() calls that failed (out of file descriptors); accepting paused meanwhile", "accept_failures"),
    ("database_failures", "Database checks and queries that found the database unavailable", "database_failures"),
    ("counts_unsent", "Stream-count announcements the bus did not take (dropped; repeated every second)", "counts_unsent"),
    ("gc_freezes", "Times the heap was frozen again once new streams settled (streamer/gcpolicy.py)", "gc_freezes"),
    ("gc_full_collections", "Full collections of the frozen heap, after the streams turned over (streamer/gcpolicy.py)", "gc_full_collections"),
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
        yield GaugeMetricFamily(f"{p}_database_up", "1 while the database answers", value=stats["database"] == "up")
        yield GaugeMetricFamily(f"{p}_peer_streamers", "Other streamers whose stream counts are heard", value=stats["peer_streamers"])
        latency = GaugeMetricFamily(
            f"{p}_latency_ms", "Published-to-written latency of recent events", labels=["quantile"]
        )
        for label, key in (("0.5", "p50"), ("0.99", "p99"), ("1", "max")):
            value = stats["latency_ms"][key]
            latency.add_metric([label], float("nan") if value is None else value)
        yield latency
