"""Writing to clients: a key's batch formatted once, the same bytes for every live client; resyncs and catch-up steps.

Every write here is counted in the stats (frames delivered, resyncs sent,
events that could not be formatted). Nothing here decides who gets what: the
hub and the catch-up core do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from bus.replay import BusEvent
from streamer import sse
from streamer.catchup import Step
from streamer.client import Client
from streamer.stats import StreamerStats

log = logging.getLogger(__name__)


def format_batch(batch: Sequence[BusEvent], stats: StreamerStats) -> tuple[list[int], list[bytes]]:
    """The seqs and SSE frames of a batch; an event that cannot be formatted is counted, logged and left out."""
    seqs: list[int] = []
    frames: list[bytes] = []
    for event in batch:
        try:
            frames.append(sse.bus_event_frame(event.epoch, event.seq, event.payload["kind"], event.payload))
        except (TypeError, KeyError) as exc:  # orjson.JSONEncodeError is a TypeError
            stats.malformed_events += 1
            log.warning("event %s of %s not sent: %s", event.position, event.key, exc)
            continue
        seqs.append(event.seq)
    return seqs, frames


def write_live(clients: Sequence[Client], frames: list[bytes], batch: Sequence[BusEvent], stats: StreamerStats, read_ns: int) -> float:
    """Join the frames once and write them to every client; the batch's last latency in milliseconds.

    `read_ns` is when the batch was read off the bus (the stage histograms of streamer/timings.py).
    """
    data = frames[0] if len(frames) == 1 else b"".join(frames)
    for client in clients:
        client.send(data, len(frames))
    stats.events_delivered += len(frames) * len(clients)
    written_ns = time.time_ns()
    stats.timings.record(batch, read_ns, written_ns)
    return stats.latency.record(batch, written_ns)


def send_resync(client: Client, reason: str, stats: StreamerStats) -> None:
    """Tell a client to reload its snapshot (its stream goes on)."""
    client.send(sse.resync_frame(reason), 1)
    stats.resyncs += 1


def write_step(client: Client, step: Step, stats: StreamerStats) -> None:
    """Write what a catch-up core decided, in its order."""
    if step.resync is not None:
        send_resync(client, step.resync, stats)
    if step.replayed:
        client.send(b"".join(step.replayed), len(step.replayed) if step.counted else 0)
        stats.events_delivered += len(step.replayed)
    if step.released:
        client.send(b"".join(step.released), len(step.released))
        stats.events_delivered += len(step.released)
