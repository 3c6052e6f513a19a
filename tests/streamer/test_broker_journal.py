"""A broker SIGKILLed and restarted with its journal: a real streamer's clients miss nothing and never resync."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import zmq

from bus import protocol
from bus.publisher import Publisher
from bus.topics import StreamKey, key_topic
from tests.bus.conftest import BrokerProcess, request
from tests.streamer.conftest import World, order
from tests.streamer.sse_client import Frame
from tests.streamer.test_processes import StreamerProcess
from tests.streamer.test_stream import open_stream
from tests.waiting import wait_until

KEY = StreamKey(10, 1)  # u10 streams strategy 1


def head(broker: BrokerProcess) -> tuple[int, int]:
    """(epoch, head seq) of KEY, asked on the broker's ROUTER."""
    ctx: zmq.Context[Any] = zmq.Context.instance()
    _status, pair = request(ctx, broker.endpoints["replay"], *protocol.replay_request(key_topic(KEY), 0, protocol.HEAD_ONLY))
    return protocol.unpack_int_pair(pair)


def publish(pub: Publisher, broker: BrokerProcess, first: int, count: int) -> None:
    """Orders `first`..`first + count - 1` of KEY, waited for until the broker has sequenced them."""
    for n in range(first, first + count):
        pub.publish(order(*KEY, f"o{n}"))
    wait_until(lambda: head(broker)[1] == first + count - 1, what=f"order {first + count - 1} sequenced")


def ids(frames: list[Frame]) -> list[tuple[str | None, str]]:
    return [(frame.id, frame.json()["order_id"]) for frame in frames]


def test_after_a_broker_sigkill_and_restart_a_resuming_client_gets_exactly_what_it_missed(tmp_path: Path, world: World) -> None:
    broker = BrokerProcess(tmp_path, "--journal", str(tmp_path / "var" / "broker-journal.db")).start()
    streamer = StreamerProcess(tmp_path, "streamer", world, broker)  # type: ignore[arg-type]  # the endpoints are what it reads
    user = world.users["u10"]

    async def scenario() -> None:
        stayed = await open_stream(streamer.port, user, KEY.strategy_id)  # open across the restart
        leaving = await open_stream(streamer.port, user, KEY.strategy_id)
        with Publisher(broker.endpoints["ingress"]) as pub:
            publish(pub, broker, 1, 5)
            seen = await leaving.events(5)
            await leaving.close()
            publish(pub, broker, 6, 5)  # missed by the client that left
            epoch = head(broker)[0]
            broker.kill()
            broker.start()
            assert head(broker) == (epoch, 10), "the restarted broker has its journal's epoch and head"
            publish(pub, broker, 11, 3)
        last_id = seen[-1].id
        assert last_id == f"{epoch}-5"
        resumed = await open_stream(streamer.port, user, KEY.strategy_id, **{"Last-Event-ID": last_id})
        expected = [(f"{epoch}-{n}", f"o{n}") for n in range(6, 14)]
        assert ids(await resumed.events(8)) == expected
        assert ids(await stayed.events(13)) == [(f"{epoch}-{n}", f"o{n}") for n in range(1, 14)]
        for stream in (resumed, stayed):
            await stream.close()

    try:
        asyncio.run(scenario())  # a resync frame would be among the events and fail the comparisons
    finally:
        streamer.kill()
        broker.kill()
