"""Heartbeats: every stream gets one every `interval` seconds, each key's frame formatted once (CONTRACT §3, `--heartbeat`).

A heartbeat tells a client the stream is alive and where its key's head is;
streams still catching up get none (their next frame is their catch-up).

The keys are beaten in SLICES slices, one slice per `interval / SLICES`, each
key always in the same slice (by its hash): all 10,000 streams at once held the
loop for 100-400 ms every 10 s, and every event arriving meanwhile waited that
long (docs/benchmarks.md, the dashboard shape: it was the p99.9). With 20
slices, one slice (500 sends at 10,000 streams, and a hash of every key to find
them) still held it ~10 ms: 100 slices of 100 sends hold it ~2 ms. The hub's
`Channels` keeps each slice's channels together, so a slice no longer tests
every key's hash (~190 µs at 5,000 keys, ten times a second).
"""

from __future__ import annotations

from tornado.ioloop import PeriodicCallback

from bus.events import utc_now
from streamer import sse
from streamer.channel import Channels
from streamer.stats import StreamerStats

SLICES = 100


class Heartbeat:
    """Writes a `heartbeat` to every live client every `interval` seconds, a slice of the keys at a time."""

    def __init__(self, channels: Channels, stats: StreamerStats, interval: float) -> None:
        self.channels = channels
        self.stats = stats
        self.phase = 0
        self._timer = PeriodicCallback(self.beat_slice, interval * 1000 / SLICES)

    def start(self) -> None:
        """Start beating (on the running loop)."""
        self._timer.start()

    def stop(self) -> None:
        """Stop beating."""
        self._timer.stop()

    def beat_slice(self) -> None:
        """Beat the keys of the current slice, then move to the next one."""
        phase, self.phase = self.phase, (self.phase + 1) % SLICES
        stamp = utc_now()
        for channel in self.channels.in_slice(phase):
            frame = sse.heartbeat_frame(stamp, str(channel.head))
            for client in channel.live:
                client.send(frame, 1)
        if self.phase == 0:
            self.stats.heartbeats += 1  # a round: every key had its beat
