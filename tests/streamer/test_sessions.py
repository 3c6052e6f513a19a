"""Server-side sessions: logout, a password change and a deactivation end sessions and their streams (in-process streamer).

Ended streams get `force_disconnect` with session_ended or user_deactivated; a copied
cookie is refused afterwards; what is not ended (another session, the API token) keeps streaming.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from bus.events import EndSessionsMessage
from bus.publisher import Publisher
from store import sessions
from store.db import make_engine, make_session_factory
from store.models import User, UserSession
from streamer.revocations import Ending
from streamer.services import Services
from tests.streamer.conftest import World, order, url_of
from tests.streamer.sse_client import SseStream
from tests.streamer.test_forced_disconnects import assert_forced
from tests.streamer.test_stream import open_stream, order_ids
from tests.waiting import async_wait_until


async def fetch(client: AsyncHTTPClient, url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None) -> HTTPResponse:
    raw = None if body is None and method == "GET" else json.dumps(body).encode() if body is not None else b""
    return await client.fetch(url, method=method, body=raw, headers=headers, raise_error=False)


async def login(client: AsyncHTTPClient, base_url: str, username: str, password: str) -> dict[str, str]:
    """The Cookie header of a new session."""
    response = await fetch(client, base_url + "/api/login", "POST", {"username": username, "password": password})
    assert response.code == 200, response.body
    return {"Cookie": response.headers["Set-Cookie"].split(";")[0]}


async def cookie_stream(port: int, cookie: dict[str, str], strategy_id: int) -> SseStream:
    stream = await SseStream.open(port, f"/api/events/stream?strategy_id={strategy_id}", cookie)
    assert stream.status == 200, stream.body
    connected = await stream.next_event()
    assert connected is not None and connected.event == "connection"
    return stream


async def still_streams(publisher: Publisher, stream: SseStream, user_id: int, name: str) -> None:
    publisher.publish(order(user_id, 1, name))
    assert order_ids(await stream.events(1)) == [name]


async def status(client: AsyncHTTPClient, base_url: str, headers: dict[str, str]) -> int:
    return (await fetch(client, base_url + "/api/strategies", headers=headers)).code


@pytest.mark.gen_test
async def test_logout_ends_its_session_so_a_copied_cookie_is_refused_and_its_streams_close(
    http_client: AsyncHTTPClient, base_url: str, port: int, world: World, publisher: Publisher
) -> None:
    cookie, other = [await login(http_client, base_url, "u10", "u10-pw") for _ in range(2)]
    mine, stolen = await cookie_stream(port, cookie, 1), await cookie_stream(port, dict(cookie), 10)
    elsewhere, by_token = await cookie_stream(port, other, 1), await open_stream(port, world.users["u10"], 1)
    assert await status(http_client, base_url, cookie) == 200
    assert (await fetch(http_client, base_url + "/api/logout", "POST", headers=cookie)).code == 200
    for stream in (mine, stolen):
        await assert_forced(stream, "session_ended")
    assert await status(http_client, base_url, cookie) == 401  # the copy is worth nothing now
    refused = await SseStream.open(port, "/api/events/stream?strategy_id=1", cookie)
    assert refused.status == 401
    await refused.close()
    for stream in (elsewhere, by_token):  # another session, the API token: not ended
        await still_streams(publisher, stream, 10, "still-here")
        await stream.close()
    assert await status(http_client, base_url, other) == 200


@pytest.mark.gen_test
async def test_a_password_change_ends_every_session_of_the_user_but_not_the_api_token(
    http_client: AsyncHTTPClient, base_url: str, port: int, world: World, publisher: Publisher
) -> None:
    cookies = [await login(http_client, base_url, "u10", "u10-pw") for _ in range(2)]
    streams = [await cookie_stream(port, cookie, 1) for cookie in cookies]
    by_token, neighbour = await open_stream(port, world.users["u10"], 1), await cookie_stream(port, await login(http_client, base_url, "u11", "u11-pw"), 1)
    changed = await fetch(http_client, base_url + "/api/admin/users/10/password", "POST", {"password": "new-pw"}, world.users["root"].bearer)
    assert changed.code == 200 and json.loads(changed.body) == {"id": 10, "username": "u10", "is_admin": False, "is_active": True}
    for stream in streams:
        await assert_forced(stream, "session_ended")
    assert [await status(http_client, base_url, cookie) for cookie in cookies] == [401, 401]
    await still_streams(publisher, by_token, 10, "token-kept")
    await still_streams(publisher, neighbour, 11, "other-user")
    refused = await fetch(http_client, base_url + "/api/login", "POST", {"username": "u10", "password": "u10-pw"})
    assert refused.code == 401
    assert await status(http_client, base_url, await login(http_client, base_url, "u10", "new-pw")) == 200
    for stream in (by_token, neighbour):
        await stream.close()


@pytest.mark.gen_test
@pytest.mark.streamer_config(credentials_ttl=0.5)
async def test_a_deactivated_user_loses_every_stream_login_and_token_until_activated(
    http_client: AsyncHTTPClient, base_url: str, port: int, world: World
) -> None:
    root, u10 = world.users["root"].bearer, world.users["u10"]
    by_cookie = await cookie_stream(port, await login(http_client, base_url, "u10", "u10-pw"), 1)
    by_token = await open_stream(port, u10, 10)
    response = await fetch(http_client, base_url + "/api/admin/users/10/deactivate", "POST", None, root)
    assert response.code == 200 and json.loads(response.body)["is_active"] is False
    for stream in (by_cookie, by_token):
        await assert_forced(stream, "user_deactivated")
    assert await status(http_client, base_url, u10.bearer) == 401
    assert (await fetch(http_client, base_url + "/api/login", "POST", {"username": "u10", "password": "u10-pw"})).code == 401
    refused = await SseStream.open(port, "/api/events/stream?strategy_id=1", u10.bearer)
    assert refused.status == 401
    await refused.close()
    assert (await fetch(http_client, base_url + "/api/admin/users/10/activate", "POST", None, root)).code == 200
    assert await status(http_client, base_url, await login(http_client, base_url, "u10", "u10-pw")) == 200
    # The token's refusal is kept in the cache (0.5 s here), like any answer: then it works again.
    deadline = time.monotonic() + 3.0
    while await status(http_client, base_url, u10.bearer) != 200:
        assert time.monotonic() < deadline, "the API token is still refused 3 s after activate-user"
        await asyncio.sleep(0.1)  # the polling pace, not a guess at the condition
    assert await status(http_client, base_url, await login(http_client, base_url, "u10", "u10-pw")) == 200


@pytest.mark.gen_test
async def test_an_answer_read_before_the_sessions_ended_is_refused_though_cached_or_in_flight(
    world: World, services: Services
) -> None:
    auth, token = services.auth, _session_token(world)
    viewer, read_at = await auth.by_session(token)
    assert viewer is not None and viewer.session_id is not None
    assert (await auth.by_session(token))[1] == read_at  # kept in the cache
    in_flight = asyncio.ensure_future(auth.by_token(world.users["u10"].token))
    await asyncio.sleep(0)  # one loop turn: that lookup has begun and waits for its database thread
    auth.end(EndSessionsMessage(user_id=10, api_token=True, reason="user_deactivated", message="gone"))
    assert auth.ended(viewer, read_at) == Ending("user_deactivated", "gone")
    assert (await in_flight)[0] is None  # read before the end arrived: refused
    again, read_again = await auth.by_session(token)
    assert read_again > read_at  # the cached answer was dropped: this one was read after the end...
    assert again == viewer and auth.ended(viewer, read_again) is None  # ...and is believed (the row is the truth)


def _session_token(world: World) -> str:
    """A new session of u10 made straight in the database, and its token."""
    engine = make_engine(url_of(world))
    with make_session_factory(engine)() as session:
        token = sessions.open_session(session, session.get_one(User, 10)).token
    engine.dispose()
    return token


@pytest.mark.gen_test
@pytest.mark.streamer_config(recheck=0.2)
async def test_the_recheck_ends_streams_of_sessions_and_users_ended_without_a_control_message(
    http_client: AsyncHTTPClient, base_url: str, port: int, world: World, publisher: Publisher, services: Services
) -> None:
    gone = await cookie_stream(port, await login(http_client, base_url, "u10", "u10-pw"), 1)
    deactivated = await open_stream(port, world.users["u11"], 1)
    kept = await cookie_stream(port, await login(http_client, base_url, "root", "root-pw"), 1)
    engine = make_engine(url_of(world))
    with make_session_factory(engine)() as session:  # what a lost end_sessions would have announced
        session.query(UserSession).filter(UserSession.user_id == 10).delete()
        session.get_one(User, 11).is_active = False
        session.commit()
    engine.dispose()
    await assert_forced(gone, "session_ended")
    await assert_forced(deactivated, "user_deactivated")
    await async_wait_until(lambda: services.hub.client_count == 1, what="the two streams to close")
    await still_streams(publisher, kept, 1, "root-kept")
    await kept.close()
