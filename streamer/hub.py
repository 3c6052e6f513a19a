"""The Subscriber's sink: stream keys → channels → clients; format once, write many.

Per batch of a key the frames are formatted once, joined once, and that one
bytes object is written to every live client of the key (`Channel.live`).

Resume (DESIGN hard parts 1 and 2). `open()` runs right after the key's
subscription is live, with no await in between, so the client sees every live
event after `head`. A client resuming from an older id joins its channel with
a CatchUp (streamer/catchup.py, the state core): the hub feeds it the key's
live frames and its resyncs, streamer/catchup_driver.py the broker's replay
answers, and writes what it decides; once it is live the client takes the
live stream like the others.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import zmq.asyncio

from bus import events, reasons
from bus.errors import BusUnavailable
from bus.replay import BusEvent, Position
from bus.subscriber import Subscriber
from bus.topics import StreamKey
from streamer import fanout, sse
from streamer.admission import Admission
from streamer.catchup import CatchUp
from streamer.catchup_driver import CatchUpDriver
from streamer.channel import Channel, Channels
from streamer.client import Client
from streamer.config import StreamerConfig
from streamer.heartbeat import SLICES
from streamer.peers import streamer_id
from streamer.resume import plan_resume
from streamer.revocations import Ending, Revocations, Target
from streamer.stats import StreamerStats
from streamer.userstreams import UserStreams

log = logging.getLogger(__name__)

SHUTDOWN = Ending(reasons.SERVER_SHUTDOWN, reasons.message(reasons.SERVER_SHUTDOWN))


class Hub:
    """Fans bus events out to SSE clients; the SubscriberSink (bus/subscriber_sink.py) of the process."""

    def __init__(self, config: StreamerConfig, stats: StreamerStats, context: zmq.asyncio.Context | None = None) -> None:
        self.config = config
        self.stats = stats
        # A broker answer (a snapshot's head, a catch-up's replay) may take as long as a subscription: a broker
        # slow past the bus's 2 s default (busy, or the machine loaded) is not down: its heartbeats say when it is.
        self.subscriber = Subscriber(
            config.publish, config.replay, self, context=context, replay_timeout=config.bus_timeout, coalesce_s=config.bus_coalesce
        )
        self.channels = Channels(SLICES)
        self.catch_ups = CatchUpDriver(self.channels, self.subscriber, stats)
        self.admission = Admission(config.max_streams_per_user, streamer_id())
        self.revocations = Revocations()
        self.users = UserStreams()
        self.client_count = 0
        self.closing = False
        # Told about every revocation (a key, or a strategy id), e.g. to drop cached access answers.
        self.on_revoke: Callable[[Target], None] | None = None
        self.on_sessions_ended: Callable[[events.EndSessionsMessage], None] | None = None  # the authenticator's
        self.on_counts: Callable[[events.StreamCountsMessage], None] | None = None  # other streamers' (peers.py)
        self._tasks: set[asyncio.Task[None]] = set()
        self._empty = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_client_closed = self._client_closed  # one bound method for every client, not one each

    async def start(self) -> None:
        """Start the Subscriber (it connects in the background; the broker may come later)."""
        self._loop = asyncio.get_running_loop()
        self.stats.timings.start(self._loop)
        await self.subscriber.start()

    async def close(self) -> None:
        """Abort every client and stop the Subscriber."""
        self.closing = True
        for channel in list(self.channels.values()):
            for client in channel.members:
                client.abort(reasons.SERVER_SHUTDOWN)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.stats.timings.stop()
        await self.subscriber.close()

    async def subscribe(self, key: StreamKey) -> Position:
        """Subscribe one more reader of `key`; the gap-free position once live, BusUnavailable if not."""
        try:
            return await self.subscriber.subscribe(key, timeout=self.config.bus_timeout)
        except TimeoutError:
            raise BusUnavailable(f"no answer from the broker for {key}") from None

    def unsubscribe(self, key: StreamKey) -> None:
        """Give back a subscription that no stream will own (its client left while connecting)."""
        self.subscriber.unsubscribe(key)

    def open(
        self, sock: socket.socket, key: StreamKey, head: Position, preamble: bytes, last_event_id: str | None, checked_at: float,
        session_id: int | None = None,
    ) -> Client:
        """Register a stream whose subscription is live at `head`; it owns a subscription and a reservation.

        `checked_at` is when its access check began: a control message about its
        key that arrived since then ends it at once (the check may predate it).
        `session_id` is the login session it was opened with (None: an API token).
        """
        assert self._loop is not None
        channel = self.channels.get(key)
        if channel is not None:
            key = channel.key  # the key's clients share one StreamKey
        client = Client(sock, key, self.config.client_buffer, self._on_client_closed, self._loop)
        client.session_id = session_id
        log.info("stream opened key=%s peer=%s head=%s resume=%.40r", key, client.peer, head, last_event_id)
        plan = plan_resume(last_event_id, head)
        catch_up = None if plan.replay_after is None else CatchUp(plan.replay_after, self.config.client_buffer)
        self._join(client, head, catch_up)
        client.send(preamble, 0)
        if client.closed:
            return client
        ending = SHUTDOWN if self.closing else self.revocations.since(key, checked_at, time.monotonic())
        if ending is not None:
            log.info("stream of %s ended on arrival: %s", key, ending.reason)
            client.finish(sse.force_disconnect_frame(ending.reason, ending.message), ending.reason)
        elif plan.resync is not None:
            fanout.send_resync(client, plan.resync, self.stats)
        elif catch_up is not None:
            self._spawn(self.catch_ups.run(client, catch_up))
        return client

    # -- the SubscriberSink -----------------------------------------------------

    def on_events(self, key: StreamKey, batch: Sequence[BusEvent]) -> None:
        """Format the batch once and write the same bytes to every live client of the key."""
        channel = self.channels.get(key)
        if channel is None:
            return
        self.stats.events_received += len(batch)
        channel.events += len(batch)
        last = batch[-1]
        channel.head = Position(last.epoch, last.seq)
        seqs, frames = fanout.format_batch(batch, self.stats)
        if not frames:
            return
        live = channel.live  # taken first: a client that catches up below must not get the batch twice
        if live:
            channel.last_latency_ms = fanout.write_live(live, frames, batch, self.stats, self.subscriber.read_ns)
        if channel.catching_up:
            pairs = list(zip(seqs, frames))
            for client, catch_up in list(channel.catching_up.items()):
                self.catch_ups.act(client, catch_up, catch_up.on_live(pairs))

    def on_resync(self, key: StreamKey, reason: str, position: Position) -> None:
        """The key's history is lost: tell each client to reload its snapshot; it goes on live."""
        channel = self.channels.get(key)
        if channel is None:
            return
        channel.head = position
        for client in channel.live:
            fanout.send_resync(client, reason, self.stats)
        for client, catch_up in list(channel.catching_up.items()):
            self.catch_ups.act(client, catch_up, catch_up.on_resync(reason))

    def on_control(self, message: events.ControlMessage) -> None:
        """End the streams a disconnect, cleanup_strategy or end_sessions message names; pass on stream counts."""
        if isinstance(message, events.DisconnectMessage):
            self.revoke(message.key, message.reason, message.message)
        elif isinstance(message, events.CleanupStrategyMessage):
            self.revoke(message.strategy_id, message.reason, message.message)
        elif isinstance(message, events.EndSessionsMessage):
            self.end_sessions(message)
        elif isinstance(message, events.StreamCountsMessage) and self.on_counts is not None:
            self.on_counts(message)

    def on_broker_status(self, up: bool) -> None:
        """Tell every open stream (a `bus_status`); streams stay open and resync per key when the broker is back."""
        log.info("broker %s", sse.bus_word(up))
        frame = sse.bus_status_frame(up)
        for channel in list(self.channels.values()):
            for client in channel.members:  # catching-up ones too: a system event has no place in the seq order
                client.send(frame, 1)

    # -- disconnects --------------------------------------------------------------

    def revoke(self, target: Target, reason: str, message: str) -> int:
        """End the streams of a key (or of a strategy, given its id), and for revocations.MEMORY_S
        also those opening now whose access was read before this moment. How many ended."""
        self.revocations.remember(target, Ending(reason, message), time.monotonic())
        if self.on_revoke is not None:
            self.on_revoke(target)
        if isinstance(target, StreamKey):
            return self.disconnect_key(target, reason, message)
        return self.disconnect_strategy(target, reason, message)

    def end_sessions(self, message: events.EndSessionsMessage) -> int:
        """End the streams opened with the sessions (or by the user) the message names; how many."""
        if self.on_sessions_ended is not None:
            self.on_sessions_ended(message)
        return self._finish(self.users.ended_by(message), message.reason, message.message)

    def shed(self, user_id: int, count: int) -> int:
        """Close the user's `count` newest streams: this streamer holds that many beyond the limit (admission.py)."""
        shed = self._finish(self.users.newest(user_id, count), reasons.TOO_MANY_STREAMS, reasons.message(reasons.TOO_MANY_STREAMS))
        if shed:
            self.stats.streams_shed += shed
            log.info("user %d held %d streams beyond the limit across streamers: %d closed here", user_id, count, shed)
        return shed

    def disconnect_key(self, key: StreamKey, reason: str, message: str) -> int:
        """Send force_disconnect to every stream of `key` and close them; how many there were."""
        channel = self.channels.get(key)
        if channel is None:
            return 0
        return self._finish(channel.members, reason, message)  # finishing clients leave the channel as they close

    def _finish(self, clients: Sequence[Client], reason: str, message: str) -> int:
        frame = sse.force_disconnect_frame(reason, message)
        for client in clients:
            client.finish(frame, reason)
        self.stats.forced_disconnects += len(clients)
        return len(clients)

    def disconnect_strategy(self, strategy_id: int, reason: str, message: str) -> int:
        """`disconnect_key` for every key of the strategy."""
        keys = [key for key in self.channels if key.strategy_id == strategy_id]
        return sum(self.disconnect_key(key, reason, message) for key in keys)

    def disconnect_all(self, reason: str, message: str) -> int:
        """`disconnect_key` for every key."""
        return sum(self.disconnect_key(key, reason, message) for key in list(self.channels))

    async def shutdown(self, timeout: float) -> None:
        """force_disconnect `server_shutdown` to everyone; wait up to `timeout` s, then abort the rest."""
        self.closing = True
        self.disconnect_all(*SHUTDOWN)
        if self.client_count:
            try:
                await asyncio.wait_for(self._empty.wait(), timeout)
            except TimeoutError:
                log.warning("%d streams did not close in %.1fs: aborted", self.client_count, timeout)
        await self.close()

    # -- internals --------------------------------------------------------------

    def _join(self, client: Client, head: Position, catch_up: CatchUp | None) -> None:
        channel = self.channels.get(client.key)
        if channel is None:
            channel = self.channels[client.key] = Channel(client.key, head)
        channel.join(client, catch_up)
        self.users.add(client)
        self.client_count += 1
        self._empty.clear()
        self.stats.connects += 1

    def _client_closed(self, client: Client) -> None:
        channel = self.channels.get(client.key)
        if channel is not None:
            self._leave(channel, client)
        self.subscriber.unsubscribe(client.key)
        self.users.remove(client)
        self.admission.release(client.user_id)
        self.client_count -= 1
        self.stats.disconnects += 1
        if self.client_count == 0:
            self._empty.set()
        log.info(
            "stream closed key=%s peer=%s reason=%s after %.1fs",
            client.key, client.peer, client.close_reason, time.monotonic() - client.opened,
        )

    def _leave(self, channel: Channel, client: Client) -> None:
        catch_up = channel.catching_up.get(client)
        if catch_up is not None:
            self.stats.held_frames_dropped += catch_up.dropped
        channel.leave(client)
        if client.close_reason == "slow_consumer":
            channel.slow_consumer_disconnects += 1
            self.stats.slow_consumer_disconnects += 1
        if not channel.members:
            del self.channels[client.key]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

