"""The Subscriber's sink: stream keys → channels → clients; format once, write many.

A Channel holds the clients of one key as a tuple, rebuilt when one joins or
leaves, so fan-out iterates it without copying and a client closing mid-loop
changes nothing under the loop. Per batch of a key the frames are formatted
once, joined once, and that one bytes object is written to every live client.

Resume (DESIGN hard parts 1 and 2). `open()` runs right after the key's
subscription is live, with no await in between, so the client sees every live
event after `head`. A client resuming from an older id is "held": live frames
wait in its `held` list while the broker replays the range; then it gets the
replayed frames, then the held ones with a greater seq. If the replay reached
further than the live stream has, the client stays held with a `floor` until
live events pass it. Nothing is sent twice or out of order.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq.asyncio

from bus import events
from bus.errors import BusError, BusUnavailable
from bus.replay import BusEvent, Position, Replay
from bus.subscriber import Subscriber
from bus.topics import StreamKey
from streamer import sse
from streamer.channel import Channel
from streamer.client import Client
from streamer.config import StreamerConfig
from streamer.resume import plan_resume, refusal_reason
from streamer.stats import StreamerStats, stats_snapshot

log = logging.getLogger(__name__)

REPLAY_PENDING = -1
# Control messages are remembered this long, for streams whose access check ran before one arrived.
REVOCATION_MEMORY_S = 120.0
Revocation = tuple[float, str, str]
SHUTDOWN_MESSAGE = "The server is shutting down; reconnect to resume."


class Hub:
    """Fans bus events out to SSE clients; the SubscriberSink of the process."""

    def __init__(self, config: StreamerConfig, stats: StreamerStats, context: zmq.asyncio.Context | None = None) -> None:
        self.config = config
        self.stats = stats
        self.subscriber = Subscriber(config.publish, config.replay, self, context=context)
        self.channels: dict[StreamKey, Channel] = {}
        self.streams_per_user: dict[int, int] = {}
        self.client_count = 0
        self.closing = False
        self._revoked: dict[StreamKey | int, Revocation] = {}
        # Told about every revocation (a key, or a strategy id), e.g. to drop cached access answers.
        self.on_revoke: Callable[[StreamKey | int], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._empty = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Start the Subscriber (it connects in the background; the broker may come later)."""
        self._loop = asyncio.get_running_loop()
        await self.subscriber.start()

    async def close(self) -> None:
        """Abort every client and stop the Subscriber."""
        self.closing = True
        for channel in list(self.channels.values()):
            for client in channel.members:
                client.abort("server_shutdown")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.subscriber.close()

    # -- admission --------------------------------------------------------------

    def reserve(self, user_id: int) -> bool:
        """Count one more stream of the user; False when at the limit."""
        count = self.streams_per_user.get(user_id, 0)
        if count >= self.config.max_streams_per_user:
            return False
        self.streams_per_user[user_id] = count + 1
        return True

    def release(self, user_id: int) -> None:
        """Give back a reservation (a refused connect, or a closed stream)."""
        count = self.streams_per_user.get(user_id, 0) - 1
        if count > 0:
            self.streams_per_user[user_id] = count
        else:
            self.streams_per_user.pop(user_id, None)

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
        self, sock: socket.socket, key: StreamKey, head: Position, preamble: bytes, last_event_id: str | None, checked_at: float
    ) -> Client:
        """Register a stream whose subscription is live at `head`; it owns a subscription and a reservation.

        `checked_at` is when its access check began: a control message about its
        key that arrived since then ends it at once (the check may predate it).
        """
        assert self._loop is not None
        client = Client(sock, key, self.config.client_buffer, self._client_closed, self._loop)
        channel = self.channels.get(key)
        if channel is None:
            channel = self.channels[key] = Channel(key, head)
        channel.members += (client,)
        self.client_count += 1
        self._empty.clear()
        self.stats.connects += 1
        log.info("stream opened key=%s peer=%s head=%s resume=%.40r", key, client.peer, head, last_event_id)
        client.send(preamble, 0)
        if client.closed:
            return client
        ending = ("server_shutdown", SHUTDOWN_MESSAGE) if self.closing else self._revocation_since(key, checked_at)
        if ending is not None:
            log.info("stream of %s ended on arrival: %s", key, ending[0])
            client.finish(sse.json_frame("force_disconnect", {"reason": ending[0], "message": ending[1]}), ending[0])
            return client
        plan = plan_resume(last_event_id, head)
        if plan.resync is not None:
            self._send_resync(client, plan.resync)
        elif plan.replay_after is not None:
            client.held, client.floor = [], REPLAY_PENDING
            self._spawn(self._resume(client, plan.replay_after))
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
        seqs, frames = self._format(batch)
        if not frames:
            return
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        count = len(frames)
        live = 0
        for client in channel.members:
            if client.held is None:
                client.send(data, count)
                live += 1
            else:
                self._hold(client, seqs, frames)
        if live:
            self.stats.events_delivered += count * live
            self._record_latency(channel, batch)

    def on_resync(self, key: StreamKey, reason: str, position: Position) -> None:
        """The key's history is lost: tell each client to reload its snapshot; it goes on live."""
        channel = self.channels.get(key)
        if channel is None:
            return
        channel.head = position
        for client in channel.members:
            if client.held is not None and client.floor == REPLAY_PENDING:
                client.held, client.resync_reason = [], reason
            else:
                client.held = None
                self._send_resync(client, reason)

    def on_control(self, message: events.ControlMessage) -> None:
        """End the streams a disconnect or cleanup_strategy message names."""
        if isinstance(message, events.DisconnectMessage):
            self.revoke(message.key, message.reason, message.message)
        elif isinstance(message, events.CleanupStrategyMessage):
            self.revoke(message.strategy_id, message.reason, message.message)

    def on_broker_status(self, up: bool) -> None:
        """Only logged: streams stay open and resync per key when the broker is back."""
        log.info("broker %s", "up" if up else "down")

    # -- disconnects and heartbeats ---------------------------------------------

    def revoke(self, target: StreamKey | int, reason: str, message: str) -> int:
        """End the streams of a key (or of a strategy, given its id), and for REVOCATION_MEMORY_S
        also those opening now whose access was read before this moment. How many ended."""
        self._revoked[target] = (time.monotonic(), reason, message)
        if self.on_revoke is not None:
            self.on_revoke(target)
        if isinstance(target, StreamKey):
            return self.disconnect_key(target, reason, message)
        return self.disconnect_strategy(target, reason, message)

    def disconnect_key(self, key: StreamKey, reason: str, message: str) -> int:
        """Send force_disconnect to every stream of `key` and close them; how many there were."""
        channel = self.channels.get(key)
        if channel is None:
            return 0
        frame = sse.json_frame("force_disconnect", {"reason": reason, "message": message})
        members = channel.members  # finishing clients leave the channel as they close
        for client in members:
            client.finish(frame, reason)
        self.stats.forced_disconnects += len(members)
        return len(members)

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
        self.disconnect_all("server_shutdown", SHUTDOWN_MESSAGE)
        if self.client_count:
            try:
                await asyncio.wait_for(self._empty.wait(), timeout)
            except TimeoutError:
                log.warning("%d streams did not close in %.1fs: aborted", self.client_count, timeout)
        await self.close()

    def heartbeat(self) -> None:
        """One timer for all: each key's heartbeat frame formatted once, written to its live clients."""
        stamp = events.utc_now()
        for channel in list(self.channels.values()):
            frame = sse.json_frame("heartbeat", {"timestamp": stamp, "last_event_id": str(channel.head)})
            for client in channel.members:
                if client.held is None:
                    client.send(frame, 1)
        self.stats.heartbeats += 1
        horizon = time.monotonic() - REVOCATION_MEMORY_S
        for name, (at, _, _) in list(self._revoked.items()):
            if at < horizon:
                del self._revoked[name]

    # -- internals --------------------------------------------------------------

    def _revocation_since(self, key: StreamKey, since: float) -> tuple[str, str] | None:
        for item in (self._revoked.get(key), self._revoked.get(key.strategy_id)):
            if item is not None and item[0] >= since:
                return item[1], item[2]
        return None

    def _format(self, batch: Sequence[BusEvent]) -> tuple[list[int], list[bytes]]:
        seqs: list[int] = []
        frames: list[bytes] = []
        for event in batch:
            try:
                frames.append(sse.bus_event_frame(event.epoch, event.seq, event.payload["kind"], event.payload))
            except (TypeError, KeyError) as exc:  # orjson.JSONEncodeError is a TypeError
                self.stats.malformed_events += 1
                log.warning("event %s of %s not sent: %s", event.position, event.key, exc)
                continue
            seqs.append(event.seq)
        return seqs, frames

    def _hold(self, client: Client, seqs: list[int], frames: list[bytes]) -> None:
        """A client not live yet: keep frames while its replay runs, or pass those beyond its floor."""
        held = client.held
        assert held is not None
        if client.floor == REPLAY_PENDING:
            if len(held) + len(frames) > client.limit:
                held.clear()  # the resume sees the hole and asks the broker again
            held.extend(zip(seqs[-client.limit:], frames[-client.limit:]))
            return
        newer = [frame for seq, frame in zip(seqs, frames) if seq > client.floor]
        if newer:
            client.send(b"".join(newer), len(newer))
        if seqs[-1] >= client.floor:
            client.held = None

    async def _resume(self, client: Client, after: Position) -> None:
        """Replay the key after `after`, then send replayed and held frames in seq order.

        Live frames that arrive meanwhile are held (at most --client-buffer of them);
        when more arrive, the oldest are dropped and the broker is asked again from
        where its last answer ended, until the held frames continue it.
        """
        first = True
        while True:
            reply = await self._replay(client, after)
            held = client.held
            if client.closed or held is None:
                return
            if client.resync_reason is not None or reply is None or not reply.ok:
                self._send_resync(client, client.resync_reason or refusal_reason(reply, after))
                self._release(client, [frame for _, frame in held], None)
                return
            seqs, frames = self._format([e for e in reply.events if e.seq > after.seq])
            last = seqs[-1] if seqs else after.seq
            if frames:
                # The first catch-up is bounded by the broker's history, not by --client-buffer,
                # which bounds what piles up after it: a reader resuming far back is not slow.
                client.send(b"".join(frames), 0 if first else len(frames))
                self.stats.events_delivered += len(frames)
            if held and held[0][0] > last + 1:
                after, first = Position(reply.epoch, last), False
                continue  # frames between the replay and the held ones were dropped: ask again
            self._release(client, [frame for seq, frame in held if seq > last], last)
            return

    async def _replay(self, client: Client, after: Position) -> Replay | None:
        try:
            return await self.subscriber.replay(client.key, after.epoch, after.seq)
        except BusError as exc:
            log.warning("replay of %s after %s failed: %s", client.key, after, exc)
            return None

    def _release(self, client: Client, frames: list[bytes], last: int | None) -> None:
        """Send the held frames newer than the replay; go live, or wait for the live stream to pass `last`."""
        if frames:
            client.send(b"".join(frames), len(frames))
            self.stats.events_delivered += len(frames)
        channel = self.channels.get(client.key)
        if last is not None and channel is not None and last > channel.head.seq:
            client.held, client.floor = [], last  # the replay is ahead of the live stream
        else:
            client.held = None

    def _send_resync(self, client: Client, reason: str) -> None:
        client.send(sse.json_frame("resync", {"reason": reason}), 1)
        self.stats.resyncs += 1

    def _record_latency(self, channel: Channel, batch: Sequence[BusEvent]) -> None:
        now = time.time_ns()
        record = self.stats.latency.record
        for event in batch:
            record((now - event.published_ns) / 1e6)
        channel.last_latency_ms = (now - batch[-1].published_ns) / 1e6

    def _client_closed(self, client: Client) -> None:
        channel = self.channels.get(client.key)
        if channel is not None:
            channel.members = tuple(c for c in channel.members if c is not client)
            if client.close_reason == "slow_consumer":
                channel.slow_consumer_disconnects += 1
                self.stats.slow_consumer_disconnects += 1
            if not channel.members:
                del self.channels[client.key]
        self.subscriber.unsubscribe(client.key)
        self.release(client.user_id)
        self.client_count -= 1
        self.stats.disconnects += 1
        if self.client_count == 0:
            self._empty.set()
        log.info(
            "stream closed key=%s peer=%s reason=%s after %.1fs",
            client.key, client.peer, client.close_reason, time.monotonic() - client.opened,
        )

    def snapshot(self, per_key: bool = True) -> dict[str, Any]:
        """The `/api/events/stats` map; `per_key=False` leaves out the per-key details (for /metrics)."""
        return stats_snapshot(self, per_key)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
