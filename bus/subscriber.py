"""The streamer's side of the bus: SUB with per-key order, gap recovery and a watchdog.

A `Subscriber` holds one SUB socket (reference-counted subscriptions per key),
one DEALER for replay requests, and hands its sink, for each key, events that
are contiguous in `seq`, in order and never twice.

The subscription race (DESIGN.md, hard part 1). PUB/SUB drops whatever is
published before a new subscription reaches the broker, so "subscribe, then ask
for the head" can lose the events in between. Instead the broker answers every
subscription it sees on its XPUB socket with a `_head` marker on that very
topic, carrying the key's head. libzmq applies the subscription to the XPUB
before the broker reads it, so the marker and every event after it are
delivered: `subscribe()` returns only once the marker arrived, with the
position from which delivery is gap-free. Events that arrive before the marker
have seq <= head and are dropped.

Gaps. A seq jump (high-water-mark drop, reconnect) or a marker whose head is
ahead of us starts a replay of the missing range from the broker's history;
events arriving meanwhile wait in a bounded list, then everything is delivered
in order. When the history no longer has the range, or the epoch changed (the
broker restarted), the sink gets `on_resync` and the key goes on live.

Watchdog. The broker heartbeats on the control topic. When nothing arrives for
`heartbeat_timeout` seconds the SUB socket is recreated and every subscription
sent again (libzmq does resubscribe on reconnect, but a half-open TCP
connection can hide a dead peer for minutes); the markers that answer tell each
key whether it missed events (replay) or the broker restarted (resync).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import zmq
import zmq.asyncio

from bus import codec, events, protocol
from bus.errors import BusUnavailable, DecodeError
from bus.frames import recv_frames
from bus.replay import BusEvent, Position, Replay, ReplayClient
from bus.topics import CONTROL_TOPIC, StreamKey, key_topic

log = logging.getLogger(__name__)

MAX_PENDING = 10_000
DRAIN_BATCH = 1024


class SubscriberSink(Protocol):
    """What a Subscriber tells its owner. Called on the event loop, never concurrently."""

    def on_events(self, key: StreamKey, events: Sequence[BusEvent]) -> None:
        """Events of `key`, contiguous and in order, continuing from the last call."""

    def on_resync(self, key: StreamKey, reason: str, position: Position) -> None:
        """History of `key` is lost (`epoch_changed` or `history_gone`); it goes on after `position`."""

    def on_control(self, message: events.ControlMessage) -> None:
        """A control message (disconnect, cleanup_strategy) from the bus."""

    def on_broker_status(self, up: bool) -> None:
        """The broker stopped or started answering heartbeats."""


@dataclass(slots=True)
class SubscriberStats:
    """Counters of one Subscriber."""

    events_received: int = 0
    duplicates_dropped: int = 0
    gaps_detected: int = 0
    gaps_recovered: int = 0
    resyncs: int = 0
    replay_requests: int = 0
    malformed: int = 0
    socket_recreations: int = 0
    broker_restarts: int = 0


@dataclass(slots=True)
class _KeyState:
    ready: asyncio.Future[None]
    refs: int = 0
    epoch: int | None = None
    seq: int = 0
    awaiting_marker: bool = True
    recovering: bool = False
    pending: list[BusEvent] = field(default_factory=list)


class Subscriber:
    """Per-key ordered, gap-free delivery from the broker to one sink."""

    def __init__(
        self,
        publish: str,
        replay: str,
        sink: SubscriberSink,
        *,
        context: zmq.asyncio.Context | None = None,
        heartbeat_timeout: float = 3.0,
        replay_timeout: float = 2.0,
        hwm: int = 100_000,
    ) -> None:
        self.publish_endpoint = publish
        self.replay_endpoint = replay
        self.sink = sink
        self.heartbeat_timeout = heartbeat_timeout
        self.hwm = hwm
        self.stats = SubscriberStats()
        self.broker_up = False
        self.broker_epoch: int | None = None
        self._ctx = context or zmq.asyncio.Context.instance()
        self._keys: dict[StreamKey, _KeyState] = {}
        self._topics: dict[bytes, StreamKey] = {}
        self._sub: zmq.Socket[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replayer = ReplayClient(replay, self._ctx, replay_timeout)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_heard = time.monotonic()
        self._control_ready: asyncio.Future[None] | None = None
        self._closed = False

    async def start(self, timeout: float | None = None) -> None:
        """Connect and subscribe to the control topic; wait until it is live if `timeout` is given."""
        self._loop = asyncio.get_running_loop()
        self._control_ready = self._loop.create_future()
        self._open_sub()
        self._spawn(self._watchdog())
        if timeout is not None:
            await asyncio.wait_for(asyncio.shield(self._control_ready), timeout)

    async def close(self) -> None:
        """Stop the tasks and close the sockets."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._close_sub()
        self._replayer.close()

    async def subscribe(self, key: StreamKey, timeout: float = 5.0) -> Position:
        """Count one more reader of `key`; return the gap-free position once the subscription is live.

        Raises BusUnavailable when the broker does not answer within `timeout`.
        """
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState(ready=asyncio.get_running_loop().create_future())
            topic = key_topic(key)
            self._topics[topic] = key
            assert self._sub is not None, "start() first"
            self._sub.subscribe(topic)
            self._kick()
        state.refs += 1
        try:
            await asyncio.wait_for(asyncio.shield(state.ready), timeout)
        except TimeoutError:
            self.unsubscribe(key)
            raise BusUnavailable(f"the broker did not answer the subscription to {key} within {timeout}s") from None
        except asyncio.CancelledError:
            self.unsubscribe(key)
            raise
        assert state.epoch is not None
        return Position(state.epoch, state.seq)

    def unsubscribe(self, key: StreamKey) -> None:
        """Count one reader less; the SUB subscription ends with the last one."""
        state = self._keys.get(key)
        if state is None:
            return
        state.refs -= 1
        if state.refs > 0:
            return
        del self._keys[key]
        topic = key_topic(key)
        del self._topics[topic]
        if self._sub is not None:
            self._sub.unsubscribe(topic)
            self._kick()

    def position(self, key: StreamKey) -> Position | None:
        """The last position delivered for a live key."""
        state = self._keys.get(key)
        if state is None or state.epoch is None:
            return None
        return Position(state.epoch, state.seq)

    @property
    def keys(self) -> int:
        return len(self._keys)

    async def head(self, key: StreamKey) -> Position:
        """The broker's current head of `key` (for snapshots: read it before the database)."""
        return await self._replayer.head(key)

    async def replay(self, key: StreamKey, epoch: int, after_seq: int) -> Replay:
        """The events of `key` after `after_seq` from the broker's history; BusUnavailable on timeout."""
        self.stats.replay_requests += 1
        return await self._replayer.replay(key, epoch, after_seq)

    # -- reading ---------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _open_sub(self) -> None:
        # A plain socket read from a reader callback: no future, no timer per wake-up
        # (zmq.asyncio's poll cost ~200 µs per lone event; this is the streamer's hot path).
        sub: zmq.Socket[Any] = zmq.Socket(self._ctx, zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, self.hwm)
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(self.publish_endpoint)
        sub.subscribe(CONTROL_TOPIC)
        for topic in self._topics:
            sub.subscribe(topic)
        self._sub = sub
        assert self._loop is not None
        self._loop.add_reader(sub.fileno(), self._on_readable)
        self._kick()

    def _close_sub(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            assert self._loop is not None
            self._loop.remove_reader(sub.fileno())
            sub.close(linger=0)

    def _kick(self) -> None:
        """Drain soon. ZMQ_FD is edge-triggered: any socket call may consume the edge."""
        if self._loop is not None:
            self._loop.call_soon(self._on_readable)

    def _on_readable(self) -> None:
        """Read what waits on the SUB socket, at most DRAIN_BATCH messages per turn of the loop."""
        sub = self._sub
        if sub is None:
            return
        batch: list[list[bytes]] = []
        try:
            for _ in range(DRAIN_BATCH):
                batch.append(recv_frames(sub))
            self._kick()  # more may wait, and the edge-triggered FD will not say so again
        except zmq.Again:
            pass
        if not batch:
            return
        self._last_heard = time.monotonic()
        try:
            self._handle_batch(batch)
        except Exception:
            log.exception("batch of %d bus messages skipped", len(batch))

    def _handle_batch(self, batch: list[list[bytes]]) -> None:
        deliveries: dict[StreamKey, list[BusEvent]] = {}
        for frames in batch:
            try:
                self._handle_frames(frames, deliveries)
            except DecodeError as exc:
                self.stats.malformed += 1
                log.warning("malformed bus message skipped: %s", exc)
        for key, delivered in deliveries.items():
            if delivered:
                self._tell("on_events", key, delivered)

    def _handle_frames(self, frames: list[bytes], deliveries: dict[StreamKey, list[BusEvent]]) -> None:
        if len(frames) != 3:
            raise DecodeError(f"{len(frames)} frames, expected [topic, header, payload]")
        topic, header_frame, payload_frame = frames
        header = protocol.unpack_header(header_frame)
        payload = codec.unpack_map(payload_frame)
        kind = payload.get("kind")
        if topic == CONTROL_TOPIC:
            return self._handle_control(header, kind, payload)
        key = self._topics.get(topic)
        state = self._keys.get(key) if key is not None else None
        if key is None or state is None:
            return  # a key unsubscribed a moment ago
        if kind == protocol.HEAD:
            return self._handle_marker(key, state, header.epoch, header.seq, deliveries)
        if protocol.is_private(kind):
            return  # broker protocol we do not know: ignore
        self.stats.events_received += 1
        if state.awaiting_marker:
            return  # seq <= the head the marker will bring
        event = BusEvent(key, header.epoch, header.seq, header.published_ns, header.sequenced_ns, payload)
        self._accept(key, state, event, deliveries)

    def _accept(self, key: StreamKey, state: _KeyState, event: BusEvent, deliveries: dict[StreamKey, list[BusEvent]]) -> None:
        if event.epoch != state.epoch:
            self._resync(key, state, "epoch_changed", Position(event.epoch, event.seq - 1), deliveries)
        if state.recovering:
            if len(state.pending) < MAX_PENDING:
                state.pending.append(event)
            return  # beyond the bound, the replay after recovery fetches it again
        if event.seq <= state.seq:
            self.stats.duplicates_dropped += 1
        elif event.seq == state.seq + 1:
            state.seq = event.seq
            deliveries.setdefault(key, []).append(event)
        else:
            state.pending.append(event)
            self._start_recovery(key, state)

    def _handle_marker(self, key: StreamKey, state: _KeyState, epoch: int, head: int, deliveries: dict[StreamKey, list[BusEvent]]) -> None:
        fresh = state.epoch is None
        state.awaiting_marker = False
        if fresh:
            state.epoch, state.seq = epoch, head
        elif epoch != state.epoch:
            self._resync(key, state, "epoch_changed", Position(epoch, head), deliveries)
        elif head > state.seq and not state.recovering:
            self._start_recovery(key, state)
        if not state.ready.done():
            state.ready.set_result(None)

    def _handle_control(self, header: protocol.Header, kind: Any, payload: dict[str, Any]) -> None:
        if self.broker_epoch != header.epoch:
            if self.broker_epoch is not None:
                self.stats.broker_restarts += 1
                log.warning("broker restarted: epoch %s -> %s", self.broker_epoch, header.epoch)
            self.broker_epoch = header.epoch
        if not self.broker_up:
            self.broker_up = True
            self._tell("on_broker_status", True)
        if kind == protocol.HEAD:
            if self._control_ready is not None and not self._control_ready.done():
                self._control_ready.set_result(None)
        elif kind in events.CONTROL_KINDS:
            self._tell("on_control", events.from_wire(payload))

    def _tell(self, method: str, *args: Any) -> None:
        """Call the sink; a failing sink call is logged and must not lose other keys' events."""
        try:
            getattr(self.sink, method)(*args)
        except Exception:
            log.exception("sink %s failed", method)

    # -- gaps and resyncs -------------------------------------------------------

    def _resync(self, key: StreamKey, state: _KeyState, reason: str, position: Position, deliveries: dict[StreamKey, list[BusEvent]] | None) -> None:
        """Tell the sink the key's history is lost; deliver what came before first."""
        if deliveries and deliveries.get(key):
            self._tell("on_events", key, deliveries.pop(key))
        self.stats.resyncs += 1
        state.epoch, state.seq = position
        state.pending = [e for e in state.pending if e.epoch == position.epoch and e.seq > position.seq]
        self._tell("on_resync", key, reason, position)

    def _start_recovery(self, key: StreamKey, state: _KeyState) -> None:
        self.stats.gaps_detected += 1
        state.recovering = True
        self._spawn(self._recover(key, state))

    async def _recover(self, key: StreamKey, state: _KeyState) -> None:
        """Replay until the key is contiguous with what waits in `pending`, then deliver it."""
        backoff = 0.05
        while self._keys.get(key) is state and not self._closed:
            epoch, after = state.epoch, state.seq
            assert epoch is not None
            try:
                reply = await self.replay(key, epoch, after)
            except BusUnavailable:
                await asyncio.sleep(backoff)  # a retry pace while the broker is away, not a condition
                backoff = min(backoff * 2, 2.0)
                continue
            if self._keys.get(key) is not state or (state.epoch, state.seq) != (epoch, after):
                continue  # the key moved on meanwhile (resync or unsubscribe): ask again
            if reply.ok:
                self.stats.gaps_recovered += 1
                self._deliver_in_order(key, state, reply.events)
            else:
                reason = "history_gone" if reply.epoch == epoch else "epoch_changed"
                self._resync(key, state, reason, Position(reply.epoch, reply.head), None)
            waiting, state.pending = state.pending, []
            if self._deliver_in_order(key, state, waiting):
                state.recovering = False
                return

    def _deliver_in_order(self, key: StreamKey, state: _KeyState, candidates: list[BusEvent]) -> bool:
        """Deliver the contiguous run of `candidates`; keep the rest pending; True when nothing is left."""
        run: list[BusEvent] = []
        for i, event in enumerate(candidates):
            if event.epoch != state.epoch:
                continue
            if event.seq <= state.seq:
                self.stats.duplicates_dropped += 1
                continue
            if event.seq != state.seq + 1:
                state.pending = candidates[i:] + state.pending
                break
            state.seq = event.seq
            run.append(event)
        if run:
            self._tell("on_events", key, run)
        return not state.pending

    # -- watchdog ---------------------------------------------------------------

    async def _watchdog(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.heartbeat_timeout / 4)  # a timer tick, not a wait for a condition
            self._on_readable()  # cheap insurance against an edge of ZMQ_FD that nobody saw
            if time.monotonic() - self._last_heard < self.heartbeat_timeout:
                continue
            if self.broker_up:
                self.broker_up = False
                log.warning("no broker heartbeat for %.1fs: recreating the SUB socket", self.heartbeat_timeout)
                self._tell("on_broker_status", False)
            self._recreate_sub()

    def _recreate_sub(self) -> None:
        self.stats.socket_recreations += 1
        for state in self._keys.values():
            state.awaiting_marker = True
        self._close_sub()
        self._open_sub()
        self._last_heard = time.monotonic()
