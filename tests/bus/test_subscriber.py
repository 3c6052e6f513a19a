"""The Subscriber against a scripted broker (exact scenarios) and the real one (drops, restarts)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from bus import codec, protocol
from bus.errors import BusUnavailable
from bus.events import ControlMessage, DisconnectMessage
from bus.publisher import Publisher
from bus.replay import BusEvent, Position
from bus.subscriber import Subscriber
from bus.topics import CONTROL_TOPIC, StreamKey, key_topic
from tests.bus.conftest import BrokerProcess, broker_stats, make_order
from tests.waiting import async_wait_until, wait_until

KEY = StreamKey(7, 3)
TOPIC = key_topic(KEY)
EPOCH = 1000


class RecordingSink:
    """Keeps what the Subscriber reports, in order."""

    def __init__(self) -> None:
        self.events: list[BusEvent] = []
        self.resyncs: list[tuple[StreamKey, str, Position]] = []
        self.controls: list[ControlMessage] = []
        self.broker_status: list[bool] = []

    def on_events(self, key: StreamKey, events: Sequence[BusEvent]) -> None:
        self.events.extend(events)

    def on_resync(self, key: StreamKey, reason: str, position: Position) -> None:
        self.resyncs.append((key, reason, position))

    def on_control(self, message: ControlMessage) -> None:
        self.controls.append(message)

    def on_broker_status(self, up: bool) -> None:
        self.broker_status.append(up)

    def seqs(self, key: StreamKey = KEY) -> list[int]:
        return [e.seq for e in self.events if e.key == key]


class ScriptedBroker:
    """Real XPUB and ROUTER sockets driven step by step by the test."""

    def __init__(self, ctx: zmq.asyncio.Context) -> None:
        self.xpub = ctx.socket(zmq.XPUB)
        self.xpub.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.xpub.bind("tcp://127.0.0.1:*")
        self.router = ctx.socket(zmq.ROUTER)
        self.router.bind("tcp://127.0.0.1:*")
        self.publish = self.xpub.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.replay = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()

    async def expect_subscription(self, topic: bytes) -> None:
        while await asyncio.wait_for(self.xpub.recv(), 5) != b"\x01" + topic:
            pass

    async def send(self, topic: bytes, epoch: int, seq: int, payload: dict[str, Any]) -> None:
        await self.xpub.send_multipart([topic, protocol.pack_header(epoch, seq, 1, 2), codec.pack(payload)])

    async def marker(self, topic: bytes, epoch: int, head: int) -> None:
        await self.send(topic, epoch, head, {"kind": protocol.HEAD})

    async def event(self, seq: int, epoch: int = EPOCH) -> None:
        await self.send(TOPIC, epoch, seq, event_payload(seq))

    async def next_replay(self) -> tuple[bytes, int, int]:
        identity, verb, topic, args = await asyncio.wait_for(self.router.recv_multipart(), 5)
        assert (verb, topic) == (protocol.REPLAY, TOPIC)
        epoch, after = protocol.unpack_int_pair(args)
        return identity, epoch, after

    async def answer(self, identity: bytes, status: bytes, epoch: int, head: int, seqs: Sequence[int] = ()) -> None:
        pairs = [f for s in seqs for f in (protocol.pack_header(epoch, s, 1, 2), codec.pack(event_payload(s)))]
        await self.router.send_multipart([identity, status, protocol.pack_int_pair(epoch, head), *pairs])


def event_payload(seq: int) -> dict[str, Any]:
    return {**make_order(*KEY, order_id=f"o{seq}").to_wire()}


Scenario = Callable[[ScriptedBroker, Subscriber, RecordingSink], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted(sink: RecordingSink) -> AsyncIterator[tuple[ScriptedBroker, Subscriber]]:
    """A started Subscriber whose control subscription a ScriptedBroker has answered."""
    ctx = zmq.asyncio.Context()
    broker = ScriptedBroker(ctx)
    subscriber = Subscriber(broker.publish, broker.replay, sink, context=ctx, heartbeat_timeout=60)
    try:
        starting = asyncio.ensure_future(subscriber.start(timeout=5))
        await broker.expect_subscription(CONTROL_TOPIC)
        await broker.marker(CONTROL_TOPIC, EPOCH, 0)
        await starting
        yield broker, subscriber
    finally:
        await subscriber.close()
        ctx.destroy(linger=0)


async def subscribe_at(broker: ScriptedBroker, subscriber: Subscriber, key: StreamKey, head: int) -> Position:
    """Subscribe `key`, the broker answering with a marker at `head`."""
    subscribing = asyncio.ensure_future(subscriber.subscribe(key))
    await broker.expect_subscription(key_topic(key))
    await broker.marker(key_topic(key), EPOCH, head)
    return await subscribing


def run_scripted(scenario: Scenario) -> None:
    """Subscribe KEY at head 1 (an event sent before the marker is dropped), then run `scenario`."""

    async def main() -> None:
        sink = RecordingSink()
        async with scripted(sink) as (broker, subscriber):
            subscribing = asyncio.ensure_future(subscriber.subscribe(KEY))
            await broker.expect_subscription(TOPIC)
            await broker.event(1)  # before the marker: covered by the head, so dropped
            await broker.marker(TOPIC, EPOCH, 1)
            assert await subscribing == Position(EPOCH, 1)
            await scenario(broker, subscriber, sink)

    asyncio.run(main())


def test_gap_is_replayed_and_delivered_in_order_without_duplicates() -> None:
    async def scenario(broker: ScriptedBroker, subscriber: Subscriber, sink: RecordingSink) -> None:
        for seq in (2, 5, 6):
            await broker.event(seq)
        identity, epoch, after = await broker.next_replay()
        assert (epoch, after) == (EPOCH, 2)
        await broker.answer(identity, protocol.OK, EPOCH, 5, [3, 4, 5])
        for seq in (4, 7):
            await broker.event(seq)
        await async_wait_until(lambda: 7 in sink.seqs(), what="seq 7")
        assert sink.seqs() == [2, 3, 4, 5, 6, 7]
        assert (subscriber.stats.gaps_detected, subscriber.stats.gaps_recovered) == (1, 1)
        assert subscriber.stats.duplicates_dropped == 2  # seq 5 (replayed, then pending) and the re-sent seq 4
        assert subscriber.position(KEY) == Position(EPOCH, 7)

    run_scripted(scenario)


def test_history_gone_is_reported_as_resync_and_the_key_goes_on_live() -> None:
    async def scenario(broker: ScriptedBroker, subscriber: Subscriber, sink: RecordingSink) -> None:
        await broker.event(9)
        identity, _, after = await broker.next_replay()
        assert after == 1
        await broker.answer(identity, protocol.GONE, EPOCH, 9)
        await broker.event(10)
        await async_wait_until(lambda: 10 in sink.seqs(), what="seq 10")
        assert sink.resyncs == [(KEY, "history_gone", Position(EPOCH, 9))]
        assert sink.seqs() == [10]

    run_scripted(scenario)


def test_epoch_change_is_reported_before_the_new_epochs_events() -> None:
    async def scenario(broker: ScriptedBroker, subscriber: Subscriber, sink: RecordingSink) -> None:
        await broker.event(2)
        await broker.event(1, epoch=EPOCH + 1)
        await broker.event(2, epoch=EPOCH + 1)
        await async_wait_until(lambda: len(sink.events) == 3, what="three events")
        assert [(e.epoch, e.seq) for e in sink.events] == [(EPOCH, 2), (EPOCH + 1, 1), (EPOCH + 1, 2)]
        assert sink.resyncs == [(KEY, "epoch_changed", Position(EPOCH + 1, 0))]

    run_scripted(scenario)


def test_a_marker_ahead_of_us_starts_a_replay() -> None:
    async def scenario(broker: ScriptedBroker, subscriber: Subscriber, sink: RecordingSink) -> None:
        await broker.marker(TOPIC, EPOCH, 3)  # another streamer subscribed; we missed 2 and 3
        identity, _, after = await broker.next_replay()
        assert after == 1
        await broker.answer(identity, protocol.OK, EPOCH, 3, [2, 3])
        await async_wait_until(lambda: sink.seqs() == [2, 3], what="seqs 2 and 3")

    run_scripted(scenario)


def test_control_messages_reach_the_sink() -> None:
    async def scenario(broker: ScriptedBroker, subscriber: Subscriber, sink: RecordingSink) -> None:
        message = DisconnectMessage(7, 3, "permission_revoked", "unlinked")
        await broker.send(CONTROL_TOPIC, EPOCH, 0, message.to_wire())
        await async_wait_until(lambda: sink.controls, what="the control message")
        assert sink.controls == [message]

    run_scripted(scenario)


@contextlib.asynccontextmanager
async def started(broker: BrokerProcess, sink: RecordingSink, **kwargs: Any) -> AsyncIterator[Subscriber]:
    """A started Subscriber on a real broker; closed with its context whatever the test does."""
    ctx = zmq.asyncio.Context()
    subscriber = Subscriber(broker.endpoints["publish"], broker.endpoints["replay"], sink, context=ctx, **kwargs)
    try:
        await subscriber.start(timeout=5)
        yield subscriber
    finally:
        await subscriber.close()
        ctx.destroy(linger=0)


def test_a_forced_gap_behind_a_stalled_reader_is_recovered_in_order(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path, "--hwm", "10", "--history", "100000", "--history-bytes", "200000000").start()
    count = 40_000

    async def main() -> None:
        sink = RecordingSink()
        async with started(broker, sink, hwm=10, replay_timeout=10) as subscriber:
            await subscriber.subscribe(KEY)
            with Publisher(broker.endpoints["ingress"]) as pub:
                # The loop is blocked here, so the SUB stops reading and the broker drops at its HWM.
                for i in range(count):
                    pub.publish(make_order(*KEY, order_id=str(i)))
                wait_until(lambda: broker_stats(zmq.Context.instance(), broker.endpoints["replay"])["published"] == count, timeout=60, what="all events sequenced")
            await async_wait_until(lambda: len(sink.events) == count, timeout=60, what="every event delivered")
            assert sink.seqs() == list(range(1, count + 1))
            assert [e.payload["order_id"] for e in sink.events] == [str(i) for i in range(count)]
            assert subscriber.stats.gaps_detected >= 1, "the test did not force a gap"
            assert subscriber.stats.gaps_recovered >= 1

    try:
        asyncio.run(main())
    finally:
        broker.kill()


@pytest.mark.expect_log('no broker heartbeat', 'broker restarted')
def test_broker_restart_is_survived_and_reported_as_resync(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path).start()

    async def main() -> None:
        sink = RecordingSink()
        async with started(broker, sink, heartbeat_timeout=0.5) as subscriber:
            first = await subscriber.subscribe(KEY)
            with Publisher(broker.endpoints["ingress"]) as pub:
                pub.publish(make_order(*KEY))
                await async_wait_until(lambda: sink.seqs() == [1], what="first event")
                broker.kill()
                await async_wait_until(lambda: False in sink.broker_status, what="broker reported down")
                broker.start()
                await async_wait_until(lambda: sink.broker_status[-1] is True, what="broker reported up")
                pub.publish(make_order(*KEY, order_id="after"))
                await async_wait_until(lambda: sink.events[-1].payload["order_id"] == "after", what="event after restart")
            assert sink.resyncs and sink.resyncs[0][1] == "epoch_changed"
            assert sink.events[-1].epoch != first.epoch
            # The dead broker closed the connection: libzmq reconnected and resubscribed on the same socket.
            assert subscriber.stats.socket_recreations == 0

    try:
        asyncio.run(main())
    finally:
        broker.kill()


def test_a_subscription_the_broker_never_answers_raises_bus_unavailable_and_is_undone() -> None:
    async def scenario(broker: ScriptedBroker, subscriber: Subscriber, sink: RecordingSink) -> None:
        with pytest.raises(BusUnavailable):
            await subscriber.subscribe(StreamKey(8, 8), timeout=0.2)
        assert subscriber.keys == 1
        assert subscriber.position(StreamKey(8, 8)) is None

    run_scripted(scenario)


class FailingSink(RecordingSink):
    """A sink whose owner has a bug for one key."""

    def on_events(self, key: StreamKey, events: Sequence[BusEvent]) -> None:
        if key == KEY:
            raise RuntimeError("bug in the owner")
        super().on_events(key, events)


@pytest.mark.expect_log('sink on_events failed')
def test_a_failing_sink_call_for_one_key_does_not_lose_another_keys_events(caplog: pytest.LogCaptureFixture) -> None:
    other = StreamKey(70, 3)

    async def main() -> None:
        sink = FailingSink()
        async with scripted(sink) as (broker, subscriber):
            for key in (KEY, other):
                await subscribe_at(broker, subscriber, key, 0)
            for seq in (1, 2):
                await broker.event(seq)
                await broker.send(key_topic(other), EPOCH, seq, make_order(*other).to_wire())
            await async_wait_until(lambda: sink.seqs(other) == [1, 2], what="the other key's events")
            assert subscriber.position(KEY) == Position(EPOCH, 2)

    asyncio.run(main())
    assert "sink on_events failed" in caplog.text
