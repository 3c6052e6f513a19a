"""The page is told when the streamer loses the broker: `connection`'s "bus" field and `bus_status` events."""

from __future__ import annotations

import pytest

from tests.streamer.conftest import BrokerThread, World
from tests.streamer.sse_client import Frame, SseStream

WATCHDOG_S = 10.0  # the Subscriber's watchdog calls the broker down after 3 s of silence


async def open_stream(port: int, world: World) -> tuple[SseStream, Frame]:
    stream = await SseStream.open(port, "/api/events/stream?strategy_id=1", world.users["u10"].bearer)
    assert stream.status == 200, stream.body
    connected = await stream.next_event()
    assert connected is not None and connected.event == "connection"
    return stream, connected


@pytest.mark.expect_log("no broker heartbeat", "broker restarted")
@pytest.mark.gen_test(timeout=30)
async def test_every_open_stream_hears_the_bus_go_down_and_come_back(port: int, world: World, broker: BrokerThread) -> None:
    first, connected = await open_stream(port, world)
    assert connected.json()["bus"] == "up"
    broker.stop()

    down = await first.next_event(WATCHDOG_S)
    assert down is not None and (down.event, down.json(), down.id) == ("bus_status", {"status": "down"}, None)
    # A stream opened now (its key already subscribed) is told at once that live data is paused.
    second, connected = await open_stream(port, world)
    assert connected.json()["bus"] == "down"

    broker.start()
    for stream in (first, second):
        up = await stream.next_event(WATCHDOG_S)
        assert up is not None and (up.event, up.json()) == ("bus_status", {"status": "up"})
        # The new broker has a new epoch: the key's history is gone, the page reloads its snapshot.
        resync = await stream.next_event(WATCHDOG_S)
        assert resync is not None and (resync.event, resync.json()) == ("resync", {"reason": "epoch_changed"})
    await first.close()
    await second.close()
