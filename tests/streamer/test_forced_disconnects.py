"""Streams end with force_disconnect: admin actions over the bus, the periodic re-check, and Tornado's client."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from sqlalchemy.orm import Session
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from bus.events import DisconnectMessage
from bus.publisher import Publisher
from store import actions
from store.db import make_engine, make_session_factory
from streamer.services import Services
from tests.streamer.conftest import World, order, url_of
from tests.streamer.sse_client import SseStream
from tests.streamer.test_stream import open_stream, order_ids
from tests.waiting import async_wait_until


async def admin_call(client: AsyncHTTPClient, url: str, method: str, world: World, body: Any = None) -> HTTPResponse:
    raw = b"" if body is None else json.dumps(body)
    return await client.fetch(
        url, method=method, body=raw, headers=world.users["root"].bearer, raise_error=False, allow_nonstandard_methods=True
    )


async def assert_forced(stream: SseStream, reason: str) -> None:
    """The stream's next frame is force_disconnect with `reason`, then the server closes it."""
    frame = await stream.next_event()
    assert frame is not None and frame.event == "force_disconnect"
    data = frame.json()
    assert data["reason"] == reason and isinstance(data["message"], str) and data["message"]
    assert await stream.rest() == []
    await stream.close()


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("method", "path", "body", "reason", "refused", "ended", "kept"),
    [
        ("DELETE", "/api/admin/links", {"strategy_id": 4, "account_id": 2}, "permission_revoked", 403, [("u10", 4)], [("u10", 1), ("root", 4)]),
        ("POST", "/api/admin/strategies/10/deactivate", None, "strategy_inactive", 409, [("u10", 10), ("u11", 10), ("root", 10)], [("u10", 1)]),
        ("DELETE", "/api/admin/strategies/11", None, "strategy_deleted", 403, [("u10", 11), ("u11", 11), ("root", 11)], [("u11", 1), ("u11", 10)]),
    ],
)
async def test_each_admin_action_ends_exactly_the_streams_it_concerns_and_refuses_them_after(
    http_client: AsyncHTTPClient, base_url: str, port: int, world: World, publisher: Publisher,
    method: str, path: str, body: Any, reason: str, refused: int, ended: list[tuple[str, int]], kept: list[tuple[str, int]],
) -> None:
    ending = [await open_stream(port, world.users[name], strategy_id) for name, strategy_id in ended]
    staying = [await open_stream(port, world.users[name], strategy_id) for name, strategy_id in kept]
    response = await admin_call(http_client, base_url + path, method, world, body)
    assert response.code == 200, response.body
    for stream in ending:
        await assert_forced(stream, reason)
    for name, strategy_id in ended:  # at once: no cached "allowed" outlives the action
        again = await SseStream.open(port, f"/api/events/stream?strategy_id={strategy_id}", world.users[name].bearer)
        assert again.status == refused
        await again.close()
    for (name, strategy_id), stream in zip(kept, staying):
        publisher.publish(order(world.users[name].id, strategy_id, "still-here"))
        assert order_ids(await stream.events(1)) == ["still-here"]
        await stream.close()


@pytest.mark.gen_test
@pytest.mark.streamer_config(recheck=0.2)
async def test_the_recheck_ends_streams_whose_access_changed_without_a_control_message(
    port: int, world: World, publisher: Publisher
) -> None:
    revoked = await open_stream(port, world.users["u10"], 4)
    inactive = await open_stream(port, world.users["u11"], 10)
    kept = await open_stream(port, world.users["u10"], 1)
    engine = make_engine(url_of(world))
    with make_session_factory(engine)() as session:
        _change_silently(session, world)
    engine.dispose()
    await assert_forced(revoked, "permission_revoked")
    await assert_forced(inactive, "strategy_inactive")
    again = await SseStream.open(port, "/api/events/stream?strategy_id=4", world.users["u10"].bearer)
    assert again.status == 403
    await again.close()
    publisher.publish(order(10, 1, "still-here"))
    assert order_ids(await kept.events(1)) == ["still-here"]
    await kept.close()


def _change_silently(session: Session, world: World) -> None:
    """What a lost control message would have announced: publish=None sends nothing."""
    actions.unlink(session, None, 4, world.accounts["u10"])
    actions.deactivate(session, None, 10)


@pytest.mark.gen_test
async def test_a_control_message_arriving_while_a_stream_opens_still_ends_it(
    port: int, world: World, services: Services
) -> None:
    opening = asyncio.ensure_future(SseStream.open(port, "/api/events/stream?strategy_id=10", world.users["u11"].bearer))
    # The reservation is taken in the same step as the access check starts.
    await async_wait_until(lambda: services.hub.admission.streams_per_user.get(11) == 1, what="the connect to begin")
    services.publish(DisconnectMessage(11, 10, "permission_revoked", "revoked while connecting"))
    stream = await opening
    assert stream.status == 200
    frames = [f for f in await stream.rest() if f.event != "heartbeat"]
    assert [f.event for f in frames][-1] == "force_disconnect"
    assert frames[-1].json() == {"reason": "permission_revoked", "message": "revoked while connecting"}
    await stream.close()


@pytest.mark.gen_test
async def test_tornados_own_client_reads_the_stream_incrementally(
    http_client: AsyncHTTPClient, base_url: str, world: World, publisher: Publisher, services: Services
) -> None:
    chunks: list[bytes] = []
    fetch = http_client.fetch(
        base_url + "/api/events/stream?strategy_id=1", headers=world.users["u11"].bearer,
        streaming_callback=chunks.append, request_timeout=10,
    )
    await async_wait_until(lambda: b"event: connection" in b"".join(chunks), what="the connection event")
    publisher.publish(order(11, 1, "via-tornado"))
    await async_wait_until(lambda: b'"order_id":"via-tornado"' in b"".join(chunks), what="the event")
    services.hub.disconnect_key(next(iter(services.hub.channels)), "strategy_inactive", "bye")
    response = await fetch
    assert response.code == 200 and response.headers["Content-Type"] == "text/event-stream"
    assert b"event: force_disconnect" in b"".join(chunks)


@pytest.mark.gen_test(timeout=20)
@pytest.mark.streamer_config(client_buffer=10_000)
async def test_a_client_that_is_behind_gets_what_it_was_owed_then_force_disconnect_and_nothing_after(
    http_client: AsyncHTTPClient, base_url: str, port: int, world: World, publisher: Publisher, services: Services
) -> None:
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(f"GET /api/events/stream?strategy_id=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {world.users['u10'].token}\r\n\r\n".encode())
    await async_wait_until(lambda: services.hub.client_count == 1, what="the stream to open")
    sent = 0
    while services.snapshot()["keys"]["10:1"]["max_backlog_frames"] == 0:
        assert sent < 2000, "no backlog built up"
        publisher.send_map(b"k/10/1/", {**order(10, 1, f"o{sent}").to_wire(), "note": "x" * 2000})
        sent += 1
        if sent % 50 == 0:
            await async_wait_until(lambda: services.stats.events_received == sent, what="the batch to arrive")  # noqa: B023 (called before the loop moves on)
    response = await admin_call(http_client, base_url + "/api/admin/strategies/1/deactivate", "POST", world)
    assert response.code == 200
    await async_wait_until(lambda: services.stats.forced_disconnects == 1, what="the control message")
    publisher.publish(order(10, 1, "too-late"))
    reader, writer = await asyncio.open_connection(sock=stalled)
    stream = SseStream(reader, writer)
    await stream._read_head()
    frames = [f for f in await stream.rest(timeout=10) if f.event not in ("heartbeat", "connection")]
    assert [f.event for f in frames[:-1]] == ["order_update"] * sent
    assert order_ids(frames[:-1]) == [f"o{n}" for n in range(sent)]
    assert frames[-1].event == "force_disconnect" and frames[-1].json()["reason"] == "strategy_inactive"
    await stream.close()
