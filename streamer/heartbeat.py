"""Heartbeats: one timer for every stream, each key's frame formatted once (CONTRACT §3, `--heartbeat`).

A heartbeat tells a client the stream is alive and where its key's head is;
streams still catching up get none (their next frame is their catch-up).
"""

from __future__ import annotations

from collections.abc import Mapping

from tornado.ioloop import PeriodicCallback

from bus.events import utc_now
from bus.topics import StreamKey
from streamer import sse
from streamer.channel import Channel
from streamer.stats import StreamerStats


class Heartbeat:
    """Writes a `heartbeat` to every live client every `interval` seconds."""

    def __init__(self, channels: Mapping[StreamKey, Channel], stats: StreamerStats, interval: float) -> None:
        self.channels = channels
        self.stats = stats
        self._timer = PeriodicCallback(self.beat, interval * 1000)

    def start(self) -> None:
        """Start beating (on the running loop)."""
        self._timer.start()

    def stop(self) -> None:
        """Stop beating."""
        self._timer.stop()

    def beat(self) -> None:
        """One heartbeat frame per key, written to its live clients."""
        stamp = utc_now()
        for channel in list(self.channels.values()):
            frame = sse.heartbeat_frame(stamp, str(channel.head))
            for client in channel.live:
                client.send(frame, 1)
        self.stats.heartbeats += 1
