"""The streamer's side of the bus: SUB with per-key order, gap recovery and a watchdog.

A `Subscriber` holds one SUB socket (subreader.py) and one DEALER for replays
(replay.py), and hands its sink, for each key, events contiguous in `seq`, in
order and never twice. It is wiring: the subscribed keys and their readers are
kept by subscriptions.py, each key's state and decisions are a KeySync
(keysync.py), gaps are replayed by recovery.py, a silent broker is handled by
watchdog.py.

The subscription race (DESIGN.md, hard part 1). PUB/SUB drops whatever is
published before a new subscription reaches the broker, so "subscribe, then ask
for the head" can lose the events in between. Instead the broker answers every
subscription it sees on its XPUB socket with a `_head` marker on that very
topic, carrying the key's head. libzmq applies the subscription to the XPUB
before the broker reads it, so the marker and every event after it are
delivered: `subscribe()` returns once the marker arrived, with the position
from which delivery is gap-free.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec

import zmq
import zmq.asyncio

from bus import codec, events, protocol
from bus.errors import BusUnavailable, DecodeError
from bus.keysync import DELIVER, Action, KeySync, Resync, Step
from bus.recovery import recover
from bus.replay import BusEvent, Position, Replay, ReplayClient
from bus.subreader import Batch, SubReader
from bus.subscriber_sink import SubscriberSink
from bus.subscriptions import Subscription, Subscriptions
from bus.topics import CONTROL_TOPIC, StreamKey
from bus.watchdog import watch

log = logging.getLogger(__name__)

P = ParamSpec("P")
Deliveries = dict[StreamKey, list[BusEvent]]


@dataclass(slots=True)
class SubscriberStats:
    """Counters of one Subscriber."""

    events_received: int = 0
    duplicates_dropped: int = 0
    gaps_detected: int = 0
    gaps_recovered: int = 0
    resyncs: int = 0
    replay_requests: int = 0
    replay_resent: int = 0  # replay or head requests sent again, unanswered for a quarter of their timeout
    malformed: int = 0
    socket_recreations: int = 0
    broker_restarts: int = 0
    own_stalls: int = 0  # watchdog ticks that came a tick late or more: this process did not run


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
        reconnect_after: float = 15.0,
        replay_timeout: float = 2.0,
        hwm: int = 100_000,
        coalesce_s: float = 0.0,
    ) -> None:
        self.publish_endpoint = publish
        self.replay_endpoint = replay
        self.sink = sink
        self.heartbeat_timeout = heartbeat_timeout
        self.reconnect_after = max(reconnect_after, heartbeat_timeout)
        self.stats = SubscriberStats()
        self.broker_up = False
        self.broker_epoch: int | None = None
        self.closed = False
        self._ctx = context or zmq.asyncio.Context.instance()
        self._subs = Subscriptions(self.stats)
        self._reader = SubReader(self._ctx, publish, hwm, self._handle_batch, coalesce_s)
        self._replayer = ReplayClient(replay, self._ctx, replay_timeout, self.stats)
        self._tasks: set[asyncio.Task[None]] = set()
        self._control_ready: asyncio.Future[None] | None = None

    async def start(self, timeout: float | None = None) -> None:
        """Connect and subscribe to the control topic; wait until it is live if `timeout` is given."""
        loop = asyncio.get_running_loop()
        self._control_ready = loop.create_future()
        self._reader.open(loop, self._all_topics())
        self._spawn(watch(self, self.heartbeat_timeout, self.reconnect_after))
        if timeout is not None:
            await asyncio.wait_for(asyncio.shield(self._control_ready), timeout)

    async def close(self) -> None:
        """Stop the tasks and close the sockets."""
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._reader.close()
        self._replayer.close()

    async def subscribe(self, key: StreamKey, timeout: float = 5.0) -> Position:
        """Count one more reader of `key`; return the gap-free position once the subscription is live.

        Raises BusUnavailable when the broker does not answer within `timeout`.
        """
        assert key in self._subs or self._reader.is_open, "start() first"
        sub, topic = self._subs.acquire(key)
        if topic is not None:
            self._reader.subscribe(topic)
        try:
            await asyncio.wait_for(asyncio.shield(sub.ready), timeout)
        except TimeoutError:
            self.unsubscribe(key)
            raise BusUnavailable(f"the broker did not answer the subscription to {key} within {timeout}s") from None
        except asyncio.CancelledError:
            self.unsubscribe(key)
            raise
        position = sub.sync.position
        assert position is not None  # the marker that resolved `ready` set it
        return position

    def unsubscribe(self, key: StreamKey) -> None:
        """Count one reader less; the SUB subscription ends with the last one."""
        topic = self._subs.release(key)
        if topic is not None:
            self._reader.unsubscribe(topic)

    def position(self, key: StreamKey) -> Position | None:
        """The last position delivered for a live key."""
        sub = self._subs.get(key)
        return None if sub is None else sub.sync.position

    @property
    def keys(self) -> int:
        return len(self._subs)

    async def head(self, key: StreamKey) -> Position:
        """The broker's current head of `key` (for snapshots: read it before the database)."""
        return await self._replayer.head(key)

    async def replay(self, key: StreamKey, epoch: int, after_seq: int) -> Replay:
        """The events of `key` after `after_seq` from the broker's history; BusUnavailable on timeout."""
        self.stats.replay_requests += 1
        return await self._replayer.replay(key, epoch, after_seq)

    # -- frames in ---------------------------------------------------------------

    def _handle_batch(self, batch: Batch) -> None:
        deliveries: Deliveries = {}
        for frames in batch:
            try:
                self._handle_frames(frames, deliveries)
            except DecodeError as exc:
                self.stats.malformed += 1
                log.warning("malformed bus message skipped: %s", exc)
        on_events = self.sink.on_events
        for key, delivered in deliveries.items():
            if delivered:
                try:  # deliver() inlined: one call less per key of the batch
                    on_events(key, delivered)
                except Exception:
                    log.exception("sink on_events failed")

    def _handle_frames(self, frames: list[bytes], deliveries: Deliveries) -> None:
        if len(frames) != 3:
            raise DecodeError(f"{len(frames)} frames, expected [topic, header, payload]")
        topic, header_frame, payload_frame = frames
        header = protocol.unpack_header(header_frame)
        payload = codec.unpack_map(payload_frame)
        kind = payload.get("kind")
        if topic == CONTROL_TOPIC:
            return self._handle_control(header, kind, payload_frame)
        sub = self._subs.by_topic.get(topic)
        if sub is None:
            return  # a key unsubscribed a moment ago
        key = sub.key
        if kind == protocol.HEAD:
            self._act(key, sub, sub.sync.on_marker(header.epoch, header.seq), None, deliveries)
            if not sub.ready.done():
                sub.ready.set_result(None)
            return
        if type(kind) is not str or kind.startswith(protocol.PRIVATE_PREFIX):  # protocol.is_private, inlined
            return  # broker protocol we do not know: ignore
        self.stats.events_received += 1
        event = BusEvent(key, header.epoch, header.seq, header.published_ns, header.sequenced_ns, payload)
        step = sub.sync.on_event(event)
        if step is DELIVER:  # the hot path
            delivered = deliveries.get(key)
            if delivered is None:
                deliveries[key] = [event]
            else:
                delivered.append(event)
        else:
            self._act(key, sub, step, event, deliveries)

    def _act(self, key: StreamKey, sub: Subscription, step: Step, event: BusEvent | None, deliveries: Deliveries) -> None:
        """Carry out what the key's KeySync decided, in its order: resync first, then the action."""
        if step.resync is not None:
            if deliveries.get(key):
                self.deliver(key, deliveries.pop(key))  # what came before the resync goes first
            self.resync(key, step.resync)
        if step.action is Action.DELIVER and event is not None:
            deliveries.setdefault(key, []).append(event)
        elif step.action is Action.REPLAY:
            self._spawn(recover(self, key, sub.sync))

    def _handle_control(self, header: protocol.Header, kind: Any, payload: bytes) -> None:
        if self.broker_epoch != header.epoch:
            if self.broker_epoch is not None:
                self.stats.broker_restarts += 1
                log.warning("broker restarted: epoch %s -> %s", self.broker_epoch, header.epoch)
            self.broker_epoch = header.epoch
        if not self.broker_up:
            self.broker_up = True
            self._tell(self.sink.on_broker_status, True)
        if kind == protocol.HEAD:
            if self._control_ready is not None and not self._control_ready.done():
                self._control_ready.set_result(None)
        elif kind in events.CONTROL_KINDS:
            message = events.decode(payload)
            if isinstance(message, events.ControlMessage):
                self._tell(self.sink.on_control, message)

    # -- what recovery.py and watchdog.py use --------------------------------------

    def is_current(self, key: StreamKey, sync: KeySync) -> bool:
        sub = self._subs.get(key)
        return not self.closed and sub is not None and sub.sync is sync

    def deliver(self, key: StreamKey, delivered: Sequence[BusEvent]) -> None:
        self._tell(self.sink.on_events, key, delivered)

    def resync(self, key: StreamKey, resync: Resync) -> None:
        self._tell(self.sink.on_resync, key, resync.reason, resync.position)

    @property
    def last_heard(self) -> float:
        return self._reader.last_heard

    @property
    def read_ns(self) -> int:
        """When the batch being delivered was read off the SUB socket (time.time_ns())."""
        return self._reader.read_ns

    def read_now(self) -> None:
        self._reader.read()

    def broker_lost(self) -> None:
        self.broker_up = False
        self._tell(self.sink.on_broker_status, False)

    def stalled(self) -> None:
        self.stats.own_stalls += 1

    def recreate_sub(self) -> None:
        self.stats.socket_recreations += 1
        for sub in self._subs:
            sub.sync.on_socket_recreated()
        self._reader.reopen(self._all_topics())

    # -- internals ------------------------------------------------------------------

    def _all_topics(self) -> list[bytes]:
        return [CONTROL_TOPIC, *self._subs.topics()]

    def _tell(self, call: Callable[P, None], *args: P.args, **kwargs: P.kwargs) -> None:
        """Call the sink; a failing sink call is logged and must not lose other keys' events."""
        try:
            call(*args, **kwargs)
        except Exception:
            log.exception("sink %s failed", getattr(call, "__name__", call))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
