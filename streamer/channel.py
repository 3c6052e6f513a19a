"""The clients of one stream key, its head and its counters."""

from __future__ import annotations

from typing import Any

from bus.replay import Position
from bus.topics import StreamKey
from streamer.client import Client


class Channel:
    """The clients of one stream key, its head and its counters."""

    __slots__ = ("events", "head", "key", "last_latency_ms", "members", "slow_consumer_disconnects")

    def __init__(self, key: StreamKey, head: Position) -> None:
        self.key = key
        self.members: tuple[Client, ...] = ()
        self.head = head
        self.events = 0
        self.slow_consumer_disconnects = 0
        self.last_latency_ms: float | None = None

    def describe(self) -> dict[str, Any]:
        """Per-key figures for the stats endpoint: clients, head, lag and drops."""
        return {
            "clients": len(self.members),
            "head": str(self.head),
            "events": self.events,
            "max_backlog_frames": max((c.backlog_frames for c in self.members), default=0),
            "last_latency_ms": self.last_latency_ms,
            "slow_consumer_disconnects": self.slow_consumer_disconnects,
        }
