"""Two real streamer processes of one deployment: the per-user stream limit holds across both, and an ended
session's streams close on both (streamer/admission.py, streamer/peers.py, end_sessions over the bus)."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.streamer.conftest import BrokerThread, User, World
from tests.streamer.sse_client import SseStream
from tests.streamer.test_forced_disconnects import assert_forced
from tests.streamer.test_processes import StreamerProcess, start
from tests.waiting import async_wait_until, wait_until

LIMIT = 5
PATH = "/api/events/stream?strategy_id=1"


def stats(port: int, world: World) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/api/events/stats", headers=world.users["root"].bearer)
        return dict(json.loads(connection.getresponse().read()))
    finally:
        connection.close()


def open_streams(ports: list[int], world: World) -> int:
    """Streams open on these streamers, by their own count."""
    return sum(stats(port, world)["total_connections"] for port in ports)


async def connect(port: int, user: User) -> SseStream:
    return await SseStream.open(port, PATH, user.bearer)


def pair(spawn: list[StreamerProcess], tmp_path: Path, world: World, broker: BrokerThread) -> tuple[StreamerProcess, StreamerProcess]:
    limit = ("--max-streams-per-user", str(LIMIT))
    first = start(spawn, tmp_path, world, broker, "--port", "0", *limit)
    second = start(spawn, tmp_path, world, broker, "--port", "0", *limit)
    # Each has heard the other once the other's repeat of its counts arrived (u11 holds a stream on each).
    return first, second


@pytest.fixture
def spawn(tmp_path: Path, world: World, broker: BrokerThread) -> Any:
    started: list[StreamerProcess] = []
    yield started
    for process in started:
        process.kill()


async def _hold_one_each(first: StreamerProcess, second: StreamerProcess, world: World) -> list[SseStream]:
    """A stream of u11 on each streamer, and both streamers hearing the other's count of it."""
    held = [await connect(process.port, world.users["u11"]) for process in (first, second)]
    assert all(stream.status == 200 for stream in held)
    await heard(first, second, world, 1)
    return held


async def heard(first: StreamerProcess, second: StreamerProcess, world: World, on_second: int, on_first: int | None = None) -> None:
    """Wait until each streamer has heard how many streams the other holds."""
    expected = {first.port: on_second, second.port: on_first if on_first is not None else on_second}
    await async_wait_until(
        lambda: all(stats(port, world)["streams_elsewhere"] == count for port, count in expected.items()), what="each streamer to hear the other's count"
    )


def test_the_limit_counts_the_streams_a_user_holds_on_every_streamer(
    tmp_path: Path, world: World, broker: BrokerThread, spawn: list[StreamerProcess]
) -> None:
    first, second = pair(spawn, tmp_path, world, broker)
    u10 = world.users["u10"]

    async def scenario() -> None:
        held = await _hold_one_each(first, second, world)
        on_first = [await connect(first.port, u10) for _ in range(LIMIT - 1)]
        assert [s.status for s in on_first] == [200] * (LIMIT - 1)
        await heard(first, second, world, on_second=1, on_first=LIMIT)
        last = await connect(second.port, u10)
        assert last.status == 200
        await heard(first, second, world, on_second=2, on_first=LIMIT)
        assert _status(first.port, u10) == 429 and _status(second.port, u10) == 429  # u10 holds LIMIT across both
        await on_first[0].close()  # one closed on the first: the second admits one again
        await heard(first, second, world, on_second=2, on_first=LIMIT - 1)
        assert _status(second.port, u10) == 200
        for stream in [*held, *on_first[1:], last]:
            await stream.close()

    asyncio.run(scenario())


def _admitted(port: int, user: User) -> bool:
    return _status(port, user) == 200


def _split(first: StreamerProcess, second: StreamerProcess, world: World) -> tuple[int, int]:
    """The streams each holds: (the second's, the first's), what the other should have heard."""
    return stats(second.port, world)["total_connections"], stats(first.port, world)["total_connections"]


async def _ending(stream: SseStream) -> str | None:
    """The force_disconnect reason a stream already got after its connection event, or None while it is open."""
    connected = await stream.next_event()
    assert connected is not None and connected.event == "connection"
    try:
        # A closed stream's last frame is already here (the streamers counted it closed): a short wait decides.
        frame = await stream.next_event(timeout=0.5)
    except TimeoutError:
        return None
    assert frame is not None and frame.event == "force_disconnect"
    return str(frame.json()["reason"])


def _status(port: int, user: User) -> int:
    """Open a stream and hang up at once: its status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", PATH, headers={**user.bearer, "Accept": "text/event-stream"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_burst_on_both_streamers_at_once_settles_at_the_limit(
    tmp_path: Path, world: World, broker: BrokerThread, spawn: list[StreamerProcess]
) -> None:
    first, second = pair(spawn, tmp_path, world, broker)
    u10 = world.users["u10"]

    async def scenario() -> None:
        held = await _hold_one_each(first, second, world)
        burst = await asyncio.gather(*(connect(port, u10) for _ in range(15) for port in (first.port, second.port)))
        statuses = [stream.status for stream in burst]
        assert set(statuses) <= {200, 429} and statuses.count(200) >= LIMIT
        # Admitted in the race beyond the limit: the streamer ranked second closes its newest ones.
        await async_wait_until(lambda: open_streams([first.port, second.port], world) == LIMIT + 2, what="u10 back at the limit")
        ends = [await _ending(stream) for stream in burst if stream.status == 200]
        assert ends.count(None) == LIMIT and set(ends) <= {None, "too_many_streams"}
        assert sum(stats(p.port, world)["streams_shed"] for p in (first, second)) == statuses.count(200) - LIMIT
        await heard(first, second, world, *_split(first, second, world))
        assert _status(first.port, u10) == 429 and _status(second.port, u10) == 429
        for stream in [*held, *burst]:
            await stream.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["crashed", "stopped"])
def test_a_streamer_that_crashes_or_stops_no_longer_counts(
    tmp_path: Path, world: World, broker: BrokerThread, spawn: list[StreamerProcess], stop: signal.Signals
) -> None:
    first, second = pair(spawn, tmp_path, world, broker)
    u10 = world.users["u10"]

    async def scenario() -> None:
        held = await _hold_one_each(first, second, world)
        on_first = [await connect(first.port, u10) for _ in range(LIMIT)]
        assert [s.status for s in on_first] == [200] * LIMIT
        await heard(first, second, world, on_second=1, on_first=LIMIT + 1)
        assert _status(second.port, u10) == 429
        first.proc.send_signal(stop)
        first.proc.wait(timeout=10)
        # A crash is noticed when its counts are no longer repeated (PEER_TTL_S); a clean stop says so.
        await async_wait_until(lambda: _admitted(second.port, u10), timeout=10, what="the gone streamer's streams to stop counting")
        for stream in [*held, *on_first]:
            await stream.close()

    asyncio.run(scenario())
    wait_until(lambda: stats(second.port, world)["peer_streamers"] == 0, what="the second to forget the first")


def test_a_logout_on_one_streamer_ends_the_sessions_streams_on_the_other(
    tmp_path: Path, world: World, broker: BrokerThread, spawn: list[StreamerProcess]
) -> None:
    first, second = pair(spawn, tmp_path, world, broker)

    async def scenario() -> None:
        cookie = _login(first.port)
        streams = [await SseStream.open(process.port, PATH, cookie) for process in (first, second)]
        for stream in streams:
            assert stream.status == 200 and (await stream.next_event()) is not None
        _post(second.port, "/api/logout", cookie)
        for stream in streams:
            await assert_forced(stream, "session_ended")
        assert _post(first.port, "/api/logout", cookie) == 200  # already ended: nothing to do
        refused = await SseStream.open(first.port, PATH, cookie)
        assert refused.status == 401
        await refused.close()

    asyncio.run(scenario())


def _login(port: int) -> dict[str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", "/api/login", json.dumps({"username": "u10", "password": "u10-pw"}), {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        return {"Cookie": (response.getheader("Set-Cookie") or "").split(";")[0]}
    finally:
        connection.close()


def _post(port: int, path: str, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", path, b"", headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()
