"""The event stream of an in-process streamer, over real sockets, a real broker and database."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time

import pytest
from tornado.httpclient import AsyncHTTPClient

from bus.publisher import Publisher
from streamer.services import Services
from tests.streamer.conftest import BrokerThread, User, World, order
from tests.streamer.sse_client import Frame, SseStream
from tests.waiting import async_wait_until

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")


async def open_stream(port: int, user: User, strategy_id: int, query: str = "", **headers: str) -> SseStream:
    """A stream that is live: its `connection` event arrived."""
    path = f"/api/events/stream?strategy_id={strategy_id}{query}"
    stream = await SseStream.open(port, path, {**user.bearer, **headers})
    assert stream.status == 200, stream.body
    connected = await stream.next_event()
    assert connected is not None and connected.event == "connection"
    return stream


def order_ids(frames: list[Frame]) -> list[str]:
    return [frame.json()["order_id"] for frame in frames]


@pytest.mark.gen_test
async def test_stream_starts_with_its_headers_retry_and_the_connection_event(port: int, world: World, broker: BrokerThread) -> None:
    stream = await SseStream.open(port, "/api/events/stream?strategy_id=10", world.users["u11"].bearer)
    assert stream.status == 200
    assert stream.headers["content-type"] == "text/event-stream"
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-accel-buffering"] == "no"
    connected = await stream.next_event()
    assert connected is not None and stream.retry == 3000
    assert connected.event == "connection" and connected.id is None
    assert connected.json() == {"status": "connected", "user_id": 11, "strategy_id": 10, "last_event_id": f"{broker.epoch}-0", "bus": "up"}
    await stream.close()


@pytest.mark.gen_test
async def test_an_http_1_0_client_gets_the_same_close_delimited_stream(port: int, world: World, publisher: Publisher) -> None:
    stream = await SseStream.open(port, "/api/events/stream?strategy_id=1", world.users["u10"].bearer, version="1.0")
    assert stream.status == 200 and "content-length" not in stream.headers and "transfer-encoding" not in stream.headers
    connected = await stream.next_event()
    assert connected is not None and connected.event == "connection"
    publisher.publish(order(10, 1, "old-proxy"))
    assert order_ids(await stream.events(1)) == ["old-proxy"]
    await stream.close()


@pytest.mark.gen_test
@pytest.mark.streamer_config(publish="tcp://127.0.0.1:9", replay="tcp://127.0.0.1:9", bus_timeout=0.3)
async def test_without_a_broker_streams_and_snapshots_are_503_and_readiness_is_503_naming_it(
    port: int, http_client: AsyncHTTPClient, base_url: str, world: World
) -> None:
    stream = await SseStream.open(port, "/api/events/stream?strategy_id=1", world.users["u10"].bearer)
    assert stream.status == 503 and json.loads(stream.body)["error"] == "bus_unavailable"
    await stream.close()
    snapshot = await http_client.fetch(base_url + "/api/orders?strategy_id=1", headers=world.users["u10"].bearer, raise_error=False)
    assert snapshot.code == 503 and json.loads(snapshot.body)["error"] == "bus_unavailable"
    health = await http_client.fetch(base_url + "/healthz", raise_error=False)
    assert (health.code, json.loads(health.body)) == (503, {"status": "unavailable", "broker": "down", "database": "up"})
    alive = await http_client.fetch(base_url + "/livez")
    assert (alive.code, json.loads(alive.body)) == (200, {"status": "ok"})


@pytest.mark.gen_test
async def test_each_stream_receives_only_its_own_keys_events_with_prefix_colliding_ids(
    port: int, world: World, publisher: Publisher
) -> None:
    users = [world.users[name] for name in ("root", "u10", "u11")]
    keys = [(user, strategy_id) for user in users for strategy_id in (1, 10, 11)]
    streams = [await open_stream(port, user, strategy_id) for user, strategy_id in keys]
    for n in range(3):
        for user, strategy_id in keys:
            publisher.publish(order(user.id, strategy_id, f"{user.id}:{strategy_id}:{n}"))
    for (user, strategy_id), stream in zip(keys, streams):
        frames = await stream.events(3)
        assert order_ids(frames) == [f"{user.id}:{strategy_id}:{n}" for n in range(3)]
        assert {(f.json()["user_id"], f.json()["strategy_id"]) for f in frames} == {(user.id, strategy_id)}
    for user, strategy_id in keys:
        publisher.publish(order(user.id, strategy_id, "end"))
    for stream in streams:
        assert order_ids(await stream.events(1)) == ["end"], "an event of another key came in between"
        await stream.close()


@pytest.mark.gen_test
async def test_bus_events_are_sent_as_id_event_data_without_internal_fields(
    port: int, world: World, publisher: Publisher, broker: BrokerThread
) -> None:
    stream = await open_stream(port, world.users["u10"], 1)
    event = order(10, 1, "abc")
    publisher.publish(event)
    (frame,) = await stream.events(1)
    assert (frame.event, frame.id) == ("order_update", f"{broker.epoch}-1")
    expected = event.to_wire()
    del expected["kind"]
    assert frame.json() == expected
    await stream.close()


@pytest.mark.gen_test
async def test_resume_after_a_gap_replays_exactly_the_missed_events_in_order_then_goes_live(
    port: int, world: World, publisher: Publisher, broker: BrokerThread
) -> None:
    user = world.users["u10"]
    first = await open_stream(port, user, 1)
    for n in range(1, 4):
        publisher.publish(order(10, 1, f"o{n}"))
    seen = await first.events(3)
    await first.close()
    for n in range(4, 9):
        publisher.publish(order(10, 1, f"o{n}"))
    await async_wait_until(lambda: broker.broker is not None and broker.broker.stats.published == 8, what="eight events sequenced")
    resumed = await open_stream(port, user, 1, **{"Last-Event-ID": seen[-1].id or ""})
    missed = await resumed.events(5)
    assert order_ids(missed) == [f"o{n}" for n in range(4, 9)]
    assert [f.id for f in missed] == [f"{broker.epoch}-{n}" for n in range(4, 9)]
    publisher.publish(order(10, 1, "o9"))
    (live,) = await resumed.events(1)
    assert (live.id, live.json()["order_id"]) == (f"{broker.epoch}-9", "o9")
    await resumed.close()


@pytest.mark.gen_test
async def test_last_event_id_query_parameter_resumes_and_the_header_wins_over_it(
    port: int, world: World, publisher: Publisher, broker: BrokerThread
) -> None:
    user = world.users["u11"]
    watcher = await open_stream(port, user, 11)
    for n in range(1, 6):
        publisher.publish(order(11, 11, f"o{n}"))
    await watcher.events(5)
    by_query = await open_stream(port, user, 11, f"&last_event_id={broker.epoch}-2")
    assert order_ids(await by_query.events(3)) == ["o3", "o4", "o5"]
    both = await open_stream(port, user, 11, f"&last_event_id={broker.epoch}-1", **{"Last-Event-ID": f"{broker.epoch}-4"})
    assert order_ids(await both.events(1)) == ["o5"]
    for stream in (watcher, by_query, both):
        await stream.close()


# The producer does not wait for the readers: on a loaded machine it ran more than the default history
# (100 events) ahead of a resume, whose answer is then `resync` history_gone (right, per the contract, but
# not what these tests look at; seen 3 times in 6 runs beside benchmarks). A history that holds every event
# of the run leaves only the gap-and-duplicate logic under test.
WHOLE_RUN_HISTORY = 1000


async def _resume_under_live_traffic(port: int, world: World, broker: BrokerThread, services: Services) -> None:
    """Three streams resume while 400 events keep coming: each gets exactly the rest, in order."""
    user = world.users["u10"]
    total = 400
    watcher = await open_stream(port, user, 10)
    done = threading.Event()

    def produce() -> None:
        with Publisher(broker.endpoints["ingress"]) as pub:
            for n in range(1, total + 1):
                pub.publish(order(10, 10, f"o{n}"))
                if n % 10 == 0:
                    time.sleep(0.002)  # a steady trickle, so resumes overlap live events
        done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    try:
        head = await watcher.events(50)
        resumed = [await open_stream(port, user, 10, **{"Last-Event-ID": head[k].id or ""}) for k in (9, 29, 49)]
        for k, stream in zip((9, 29, 49), resumed):
            frames = await stream.events(total - k - 1, timeout=10)
            assert order_ids(frames) == [f"o{n}" for n in range(k + 2, total + 1)]
            await stream.close()
    finally:
        thread.join()
    await watcher.close()
    assert services.stats.slow_consumer_disconnects == 0


@pytest.mark.gen_test(timeout=30)
@pytest.mark.broker_config(history=WHOLE_RUN_HISTORY)
async def test_resume_while_events_keep_coming_has_no_gap_and_no_duplicate(
    port: int, world: World, broker: BrokerThread, services: Services
) -> None:
    await _resume_under_live_traffic(port, world, broker, services)


@pytest.mark.gen_test(timeout=30)
@pytest.mark.streamer_config(client_buffer=5)
@pytest.mark.broker_config(history=WHOLE_RUN_HISTORY)
async def test_a_resume_whose_held_frames_overflow_asks_again_instead_of_dropping_the_reader(
    port: int, world: World, broker: BrokerThread, services: Services
) -> None:
    # Live frames beyond --client-buffer arrive during the replay round trip: the hub drops
    # what it holds and asks the broker again; the reader is not a slow consumer.
    await _resume_under_live_traffic(port, world, broker, services)


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("last_event_id", "reason"),
    [("{epoch_plus_1}-1", "epoch_changed"), ("garbage", "history_gone"), ("{epoch}-99", "history_gone"), ("{epoch}-+1", "history_gone")],
)
async def test_unusable_last_event_ids_get_resync_and_then_the_live_stream(
    port: int, world: World, publisher: Publisher, broker: BrokerThread, last_event_id: str, reason: str
) -> None:
    raw_id = last_event_id.format(epoch=broker.epoch, epoch_plus_1=broker.epoch + 1)
    stream = await open_stream(port, world.users["u10"], 1, **{"Last-Event-ID": raw_id})
    resync = await stream.next_event()
    assert resync is not None and (resync.event, resync.json()) == ("resync", {"reason": reason})
    publisher.publish(order(10, 1, "live"))
    assert order_ids(await stream.events(1)) == ["live"]
    await stream.close()


@pytest.mark.gen_test
async def test_history_gone_from_the_broker_becomes_resync(
    port: int, world: World, publisher: Publisher, broker: BrokerThread
) -> None:
    watcher = await open_stream(port, world.users["u10"], 1)
    for n in range(105):  # the broker keeps 100 per key
        publisher.publish(order(10, 1, f"o{n}"))
    await watcher.events(105)
    stream = await open_stream(port, world.users["u10"], 1, **{"Last-Event-ID": f"{broker.epoch}-2"})
    resync = await stream.next_event()
    assert resync is not None and resync.json() == {"reason": "history_gone"}
    for s in (watcher, stream):
        await s.close()


@pytest.mark.gen_test
@pytest.mark.streamer_config(heartbeat=0.2)
async def test_heartbeats_carry_a_timestamp_and_the_keys_head(
    port: int, world: World, publisher: Publisher, broker: BrokerThread
) -> None:
    stream = await open_stream(port, world.users["u10"], 10)
    publisher.publish(order(10, 10, "a"))
    publisher.publish(order(10, 10, "b"))
    await stream.events(2)
    beat = await stream.next_frame()
    assert beat is not None and beat.event == "heartbeat" and beat.id is None
    data = beat.json()
    assert set(data) == {"timestamp", "last_event_id"}
    assert TIMESTAMP.match(data["timestamp"])
    assert data["last_event_id"] == f"{broker.epoch}-2"
    await stream.close()


@pytest.mark.gen_test(timeout=30)
@pytest.mark.streamer_config(client_buffer=5)
async def test_a_slow_consumer_is_disconnected_while_a_normal_client_of_the_key_gets_every_event(
    port: int, world: World, publisher: Publisher, services: Services
) -> None:
    user = world.users["u10"]
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    request = f"GET /api/events/stream?strategy_id=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {user.token}\r\n\r\n"
    stalled.sendall(request.encode())
    normal = await open_stream(port, user, 1)
    await async_wait_until(lambda: services.snapshot()["connections_by_key"].get("10:1") == 2, what="both streams open")
    received: list[Frame] = []
    sent = 0
    big = "x" * 1000
    while services.stats.slow_consumer_disconnects == 0:
        assert sent < 5000, "the stalled client was never disconnected"
        for _ in range(20):  # in step with the normal reader, which therefore never falls behind
            event = order(10, 1, f"o{sent}")
            publisher.send_map(b"k/10/1/", {**event.to_wire(), "note": big})
            sent += 1
        received += await normal.events(20)
    assert order_ids(received) == [f"o{n}" for n in range(sent)]
    assert services.snapshot()["keys"]["10:1"]["slow_consumer_disconnects"] == 1
    stalled.setblocking(False)
    await async_wait_until(lambda: _drained_to_eof(stalled), what="the stalled socket to be closed by the server")
    stalled.close()
    publisher.publish(order(10, 1, "after"))
    assert order_ids(await normal.events(1)) == ["after"]
    await normal.close()


def _drained_to_eof(sock: socket.socket) -> bool:
    try:
        while chunk := sock.recv(65536):
            del chunk
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    return True


@pytest.mark.gen_test
@pytest.mark.streamer_config(max_streams_per_user=2)
async def test_a_user_gets_429_beyond_the_stream_limit_until_one_closes(port: int, world: World, services: Services) -> None:
    user = world.users["u10"]
    streams = [await open_stream(port, user, 1), await open_stream(port, user, 10)]
    refused = await SseStream.open(port, "/api/events/stream?strategy_id=11", user.bearer)
    assert refused.status == 429 and json.loads(refused.body)["error"] == "too_many_streams"
    other = await open_stream(port, world.users["u11"], 11)  # the limit is per user
    await streams[0].close()
    await async_wait_until(lambda: services.hub.admission.streams_per_user.get(10) == 1, what="the closed stream to be noticed")
    streams[0] = await open_stream(port, user, 11)
    for stream in (*streams, refused, other):
        await stream.close()


@pytest.mark.gen_test
async def test_a_closed_client_is_removed_and_its_key_unsubscribed(port: int, world: World, services: Services) -> None:
    stream = await open_stream(port, world.users["u11"], 1)
    assert services.hub.subscriber.keys == 1 and services.hub.client_count == 1
    await stream.close()
    await async_wait_until(lambda: services.hub.client_count == 0, what="the client to be removed")
    assert services.hub.channels == {} and services.hub.subscriber.keys == 0 and services.hub.admission.streams_per_user == {}


@pytest.mark.expect_log('broker restarted')
@pytest.mark.gen_test(timeout=20)
async def test_every_client_of_a_key_gets_resync_when_the_broker_restarts(
    port: int, world: World, broker: BrokerThread
) -> None:
    streams = [await open_stream(port, world.users["u10"], 1) for _ in range(2)]
    with Publisher(broker.endpoints["ingress"]) as pub:
        pub.publish(order(10, 1, "before"))
        for stream in streams:
            assert order_ids(await stream.events(1)) == ["before"]
    old_epoch = broker.epoch
    broker.stop()
    broker.start()
    for stream in streams:
        resync = await stream.next_event(timeout=10)
        assert resync is not None and resync.event == "resync" and resync.json() == {"reason": "epoch_changed"}
    with Publisher(broker.endpoints["ingress"]) as pub:
        pub.publish(order(10, 1, "after"))
        for stream in streams:
            (frame,) = await stream.events(1)
            assert frame.id == f"{broker.epoch}-1" and broker.epoch != old_epoch
            await stream.close()


@pytest.mark.gen_test
async def test_stats_count_connections_deliveries_and_latency(
    port: int, world: World, publisher: Publisher, services: Services
) -> None:
    streams = [await open_stream(port, world.users["u10"], 1) for _ in range(2)]
    streams.append(await open_stream(port, world.users["u11"], 1))
    for n in range(3):
        publisher.publish(order(10, 1, f"o{n}"))
    for stream in streams[:2]:
        await stream.events(3)
    stats = services.snapshot()
    assert stats["total_connections"] == 3
    assert stats["connections_by_key"] == {"10:1": 2, "11:1": 1}
    assert stats["events_received"] == 3 and stats["events_delivered"] == 6
    assert stats["latency_ms"]["p50"] is not None and stats["latency_ms"]["max"] >= stats["latency_ms"]["p50"]
    assert stats["keys"]["10:1"]["clients"] == 2 and stats["keys"]["10:1"]["events"] == 3
    for stream in streams:
        await stream.close()


@pytest.mark.expect_log('broker restarted')
@pytest.mark.gen_test(timeout=20)
async def test_a_client_that_leaves_while_its_stream_is_being_opened_leaves_nothing_behind(
    port: int, world: World, broker: BrokerThread, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamer.hub")
    broker.stop()  # the subscription now waits for a broker
    leaving = socket.socket()
    leaving.connect(("127.0.0.1", port))
    leaving.sendall(f"GET /api/events/stream?strategy_id=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {world.users['u10'].token}\r\n\r\n".encode())
    await async_wait_until(lambda: services.hub.subscriber.keys == 1, what="the connect to wait on its subscription")
    leaving.close()
    broker.start()
    await async_wait_until(lambda: services.hub.admission.streams_per_user == {} and services.hub.subscriber.keys == 0, what="the reservation and subscription to be released")
    assert services.hub.client_count == 0 and services.hub.channels == {}
    # Found gone when its socket was to be handed over: never opened (the hub would log it).
    assert [r for r in caplog.records if r.getMessage().startswith("stream opened")] == []
    stream = await open_stream(port, world.users["u10"], 1)  # and the key works afterwards
    await stream.close()
