"""Runs the catch-up of each client that resumes from an older id: the broker's replays into its CatchUp.

streamer/catchup.py is the state core; this is its wiring. `run()` asks the
broker (through the Subscriber) for the key's events after the client's
position, and again while the core asks, hands each answer to the core and
writes what it decides (`act()`, which the Hub calls too with the live frames
and resyncs it feeds the core); once the core is live the client moves to its
channel's live clients.
"""

from __future__ import annotations

import logging

from bus.errors import BusError
from bus.replay import Position, Replay
from bus.subscriber import Subscriber
from bus.topics import StreamKey
from streamer import fanout
from streamer.catchup import CatchUp, Phase, Step
from streamer.channel import Channels
from streamer.client import Client
from streamer.stats import StreamerStats

log = logging.getLogger(__name__)


class CatchUpDriver:
    """The replays and writes of every catching-up client of one Hub."""

    def __init__(self, channels: Channels, subscriber: Subscriber, stats: StreamerStats) -> None:
        self.channels = channels
        self.subscriber = subscriber
        self.stats = stats

    async def run(self, client: Client, catch_up: CatchUp) -> None:
        """Replay the key after the client's position, and again while the core asks, until it is done."""
        after = catch_up.after
        while True:
            reply = await self._replay(client.key, after)
            channel = self.channels.get(client.key)
            if client.closed or channel is None or catch_up.phase is not Phase.REPLAYING:
                return
            seqs, frames = fanout.format_batch(reply.events, self.stats) if reply is not None and reply.ok else ([], [])
            step = catch_up.on_replay(reply, list(zip(seqs, frames)), channel.head.seq)
            self.act(client, catch_up, step)
            if step.ask_after is None:
                return
            after = step.ask_after

    async def _replay(self, key: StreamKey, after: Position) -> Replay | None:
        try:
            return await self.subscriber.replay(key, after.epoch, after.seq)
        except BusError as exc:
            log.warning("replay of %s after %s failed: %s", key, after, exc)
            return None

    def act(self, client: Client, catch_up: CatchUp, step: Step) -> None:
        """Write what the catch-up core decided; move the client to the live ones when it is done."""
        fanout.write_step(client, step, self.stats)
        channel = self.channels.get(client.key)
        if catch_up.phase is Phase.LIVE and channel is not None and not client.closed:
            channel.go_live(client)
            self.stats.held_frames_dropped += catch_up.dropped
