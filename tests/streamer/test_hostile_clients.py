"""The streamer against hostile clients: descriptor exhaustion (a real process), unusable Last-Event-IDs."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.ioloop
from tornado.httpclient import AsyncHTTPClient

from bench.hostile import flood
from bus.publisher import Publisher
from streamer.server import make_server
from streamer.services import Services
from tests.hostile import exchange, raw_request
from tests.ports import listen_on_free_port
from tests.streamer.conftest import BrokerThread, World, order
from tests.streamer.sse_client import SseStream
from tests.streamer.test_processes import StreamerProcess
from tests.streamer.test_stream import open_stream
from tests.waiting import async_wait_until, wait_until
from tests.web.test_server import DROP_DEADLINE_S, SLOW_CLIENTS, TIMEOUT_S, dropped_within
from web.ratelimit import address_key

FD_LIMIT = 256


def healthz(port: int) -> int:
    """The status of GET /healthz on a new connection; 0 when it does not answer within 2 s."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def limited_streamer(tmp_path: Path, world: World, broker: BrokerThread) -> Iterator[StreamerProcess]:
    """A streamer process allowed FD_LIMIT descriptors; headers may take a minute (the flood stays)."""
    process = StreamerProcess(tmp_path, "streamer", world, broker, "--port", "0", "--header-timeout", "60", fd_limit=FD_LIMIT)
    yield process
    process.kill()


def test_out_of_descriptors_the_streamer_pauses_accepting_keeps_streaming_and_recovers_alone(
    limited_streamer: StreamerProcess, world: World, publisher: Publisher
) -> None:
    process, pid = limited_streamer, limited_streamer.proc.pid

    async def scenario() -> None:
        stream = await open_stream(process.port, world.users["u10"], 1)
        with flood(process.port, FD_LIMIT + 64, pid):
            await async_wait_until(lambda: open_fds(pid) == FD_LIMIT, what="the streamer to run out of descriptors")
            await async_wait_until(lambda: "Too many open files" in process.log(), what="accept() to fail")
            publisher.publish(order(10, 1, "during-exhaustion"))
            frame = await stream.next_event()
            assert frame is not None and frame.json()["order_id"] == "during-exhaustion"
            # Tornado's own handler logged a traceback per loop turn here (250,000 lines in 3 s).
            assert process.log().count("Too many open files") == 1
            assert "Traceback" not in process.log()
        await async_wait_until(lambda: healthz(process.port) == 200, what="the streamer to accept again")
        publisher.publish(order(10, 1, "after"))
        frame = await stream.next_event()
        assert frame is not None and frame.json()["order_id"] == "after"
        await stream.close()

    asyncio.run(scenario())
    wait_until(lambda: "accepting again after" in process.log(), what="the recovery line")
    assert "Traceback" not in process.log()
    assert stats_of(process.port, world)["accept_failures"] >= 1
    assert re.search(r"^tradestream_streamer_accept_failures_total [1-9]", metrics_of(process.port), re.MULTILINE)
    assert process.terminate() == 0


def stats_of(port: int, world: World) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/api/events/stats", headers=world.users["root"].bearer)
        return dict(json.loads(connection.getresponse().read()))
    finally:
        connection.close()


def metrics_of(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/metrics")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


@pytest.fixture
def hardened_port(services: Services, io_loop: tornado.ioloop.IOLoop) -> Iterator[int]:
    """The streamer's app behind the server its process uses (streamer.server.make_server)."""
    server = make_server(services)
    yield listen_on_free_port(server)
    server.stop()


@pytest.mark.streamer_config(header_timeout=TIMEOUT_S, body_timeout=TIMEOUT_S)
@pytest.mark.parametrize(("first", "trickle"), [pytest.param(*case[1:], id=case[0]) for case in SLOW_CLIENTS])
@pytest.mark.gen_test
async def test_the_streamer_drops_a_slow_client_after_its_timeout(
    http_client: AsyncHTTPClient, hardened_port: int, first: bytes, trickle: bytes
) -> None:
    assert await dropped_within(hardened_port, first, trickle, DROP_DEADLINE_S), f"still open after {DROP_DEADLINE_S} s"
    assert (await http_client.fetch(f"http://127.0.0.1:{hardened_port}/healthz")).code == 200


STREAM_GET = b"GET /api/events/stream?strategy_id=1 HTTP/1.1\r\nHost: x\r\n"
# The stream's path is chosen only once its headers are in (streamer.app.make_front): until then, any request's timeouts.
SLOW_STREAM_CLIENTS = [
    ("stream headers never finish", STREAM_GET, b""),
    ("stream headers trickle a byte at a time", b"", STREAM_GET + b"X-Slow: " + b"a" * 10_000),
    ("idle keep-alive after a refused stream", STREAM_GET + b"\r\n", b""),
]


@pytest.mark.streamer_config(header_timeout=TIMEOUT_S, body_timeout=TIMEOUT_S)
@pytest.mark.parametrize(("first", "trickle"), [pytest.param(*case[1:], id=case[0]) for case in SLOW_STREAM_CLIENTS])
@pytest.mark.gen_test
async def test_a_slow_stream_request_is_dropped_after_the_header_timeout(
    http_client: AsyncHTTPClient, hardened_port: int, first: bytes, trickle: bytes
) -> None:
    assert await dropped_within(hardened_port, first, trickle, DROP_DEADLINE_S), f"still open after {DROP_DEADLINE_S} s"
    assert (await http_client.fetch(f"http://127.0.0.1:{hardened_port}/healthz")).code == 200


# (name, how the id is sent: header or query string) — each gets resync, then the live stream.
UNUSABLE_IDS = [
    ("NUL byte in the header", {"Last-Event-ID": "1-\x005"}, ""),
    ("the header only a NUL", {"Last-Event-ID": "\x00"}, ""),
    ("bare CR in the header", {"Last-Event-ID": "1\r5"}, ""),
    ("control bytes in the header", {"Last-Event-ID": "\x01\x7f"}, ""),
    ("a byte beyond ASCII in the header", {"Last-Event-ID": "\xff"}, ""),
    ("NUL in the query parameter", {}, "&last_event_id=1-%005"),
    ("invalid UTF-8 in the query parameter", {}, "&last_event_id=%ff%fe"),
]


@pytest.mark.parametrize(("headers", "query"), [pytest.param(*case[1:], id=case[0]) for case in UNUSABLE_IDS])
@pytest.mark.gen_test
async def test_an_unusable_last_event_id_gets_resync_then_the_live_stream(
    hardened_port: int, world: World, publisher: Publisher, headers: dict[str, str], query: str
) -> None:
    path = f"/api/events/stream?strategy_id=1{query}"
    stream = await SseStream.open(hardened_port, path, {**world.users["u10"].bearer, **headers})
    assert stream.status == 200, stream.body
    frames = [await stream.next_event(), await stream.next_event()]
    assert [frame.event if frame else None for frame in frames] == ["connection", "resync"]
    assert frames[1] is not None and frames[1].json() == {"reason": "history_gone"}
    publisher.publish(order(10, 1, "live"))
    live = await stream.next_event()
    assert live is not None and live.json()["order_id"] == "live"
    await stream.close()


_LOGIN = '"username": "u10", "password": "u10-pw"'
_ACCOUNT = '"username": "u10", "name": "acct-2", "exchange": "paper"'
# (name, path, who asks: None or an admin's name, raw body) — every one a 400 invalid_request, nothing done.
HOSTILE_BODIES = [
    ("login: username twice, the second real", "/api/login", None, '{"username": "nobody", ' + _LOGIN + '}'),
    ("login: password twice, the second right", "/api/login", None, '{"username": "u10", "password": "wrong", "password": "u10-pw"}'),
    ("login: duplicate deep in an unknown field", "/api/login", None, '{' + _LOGIN + ', "x": [{"a": 1, "a": 2}]}'),
    ("login: nested 1,000 deep", "/api/login", None, '{' + _LOGIN + ', "x": ' + "[" * 1000 + "]" * 1000 + '}'),
    ("login: nested 20,000 deep", "/api/login", None, '{' + _LOGIN + ', "x": ' + "[" * 20000 + "]" * 20000 + '}'),
    ("login: lone surrogate in username", "/api/login", None, '{"username": "\\ud800", "password": "x"}'),
    ("login: lone surrogate in password", "/api/login", None, '{"username": "u10", "password": "\\udfff"}'),
    ("login: NUL in username", "/api/login", None, '{"username": "u10\\u0000", "password": "u10-pw"}'),
    ("admin: username twice", "/api/admin/users", "root", '{"username": "a1", "username": "a2", "password": "pw"}'),
    ("admin: NUL in username", "/api/admin/users", "root", '{"username": "a\\u0000b", "password": "pw"}'),
    ("admin: capital beyond 64 bits", "/api/admin/accounts", "root", '{' + _ACCOUNT + ', "capital": ' + "9" * 30 + '}'),
    ("admin: capital 1e999", "/api/admin/accounts", "root", '{' + _ACCOUNT + ', "capital": 1e999}'),
]


@pytest.mark.parametrize(("path", "who", "raw"), [pytest.param(*case[1:], id=case[0]) for case in HOSTILE_BODIES])
@pytest.mark.gen_test
async def test_ambiguous_deep_or_unstorable_json_bodies_are_400(
    http_client: AsyncHTTPClient, base_url: str, world: World, path: str, who: str | None, raw: str
) -> None:
    headers = {"Content-Type": "application/json", **(world.users[who].bearer if who else {})}
    response = await http_client.fetch(base_url + path, method="POST", body=raw.encode(), headers=headers, raise_error=False)
    assert response.code == 400, response.body
    assert json.loads(response.body)["error"] == "invalid_request"
    assert "Set-Cookie" not in response.headers


# (name, attempts as (username, password), statuses) with 5 per address and 3 per username (no refill meanwhile).
LOGIN_LIMITS = [
    ("a user's 4th try is 429, the right password too", [("u10", "wrong")] * 3 + [("u10", "u10-pw")], [401, 401, 401, 429]),
    ("another user keeps their tries", [("u10", "wrong")] * 3 + [("u10", "x"), ("u11", "u11-pw")], [401, 401, 401, 429, 200]),
    ("an address's 6th try is 429, whatever the name", [(f"nobody{n}", "x") for n in range(5)] + [("u11", "u11-pw")], [401] * 5 + [429]),
    ("unknown names count like known ones", [("ghost", "x")] * 4, [401, 401, 401, 429]),
]


@pytest.mark.streamer_config(login_per_address=5, login_per_user=3, login_window=300.0)
@pytest.mark.parametrize(("attempts", "statuses"), [pytest.param(*case[1:], id=case[0]) for case in LOGIN_LIMITS])
@pytest.mark.gen_test
async def test_login_attempts_beyond_the_limits_are_429_with_retry_after_and_counted(
    http_client: AsyncHTTPClient, base_url: str, world: World, attempts: list[tuple[str, str]], statuses: list[int]
) -> None:
    answers = []
    for username, password in attempts:
        body = json.dumps({"username": username, "password": password}).encode()
        answers.append(await http_client.fetch(base_url + "/api/login", method="POST", body=body, raise_error=False))
    assert [answer.code for answer in answers] == statuses
    stats = json.loads((await http_client.fetch(base_url + "/api/events/stats", headers=world.users["root"].bearer)).body)
    refused = {name: stats[name] for name in ("login_refused_address", "login_refused_user", "login_refused_busy")}
    assert sum(refused.values()) == statuses.count(429) and refused["login_refused_busy"] == 0
    metrics = (await http_client.fetch(base_url + "/metrics")).body.decode()
    for name, count in refused.items():
        assert f"tradestream_streamer_{name}_total {float(count)}" in metrics
    for answer in answers:
        if answer.code == 429:
            assert json.loads(answer.body)["error"] == "rate_limited"
            # One attempt more every 300 / 3 = 100 s (per user) or 300 / 5 = 60 s (per address): the wait
            # left, in whole seconds, is at most that and counts down while a loaded machine runs the test.
            assert 1 <= int(answer.headers["Retry-After"]) <= 100
            assert "Set-Cookie" not in answer.headers


@pytest.mark.gen_test
async def test_the_password_check_runs_in_the_login_threads(http_client: AsyncHTTPClient, base_url: str) -> None:
    body = json.dumps({"username": "u10", "password": "u10-pw"}).encode()
    assert (await http_client.fetch(base_url + "/api/login", method="POST", body=body)).code == 200
    assert any(thread.name.startswith("login_") for thread in threading.enumerate())


@pytest.mark.parametrize(
    ("address", "key"),
    [("10.1.2.3", "10.1.2.3"), ("2001:db8::1", "2001:db8::/64"), ("2001:db8:0:0:ffff::9", "2001:db8::/64"),
     ("::ffff:10.1.2.3", "10.1.2.3"), ("", "")],
)
def test_ipv6_addresses_share_a_login_bucket_per_64(address: str, key: str) -> None:
    assert address_key(address) == key


# (name, method, path, headers, body, status): 4xx that Tornado logged as one WARNING each, with the request's text.
TORNADO_WARNINGS = [
    ("a dot-dot path out of /static/", "GET", "/static/..%2f..%2fsetup.cfg", {}, None, 403),
    ("an encoded dot-dot path", "GET", "/static/%2e%2e/%2e%2e/etc/passwd", {}, None, 403),
    ("a static name that is not UTF-8", "GET", "/static/%ff", {}, None, 400),
    ("a path id that is not UTF-8", "POST", "/api/admin/users/%ff/activate", {}, b"", 400),
    ("a form body in an unknown encoding", "POST", "/api/login",
     {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"}, b"a=b", 400),
    ("a multipart body without its end", "POST", "/api/login", {"Content-Type": "multipart/form-data; boundary=x"}, b"--x", 400),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "status"), [pytest.param(*case[1:], id=case[0]) for case in TORNADO_WARNINGS])
@pytest.mark.gen_test
async def test_a_client_error_tornado_explains_is_not_a_warning_per_request(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture,
    method: str, path: str, headers: dict[str, str], body: bytes | None, status: int,
) -> None:
    # An outsider decides how many such requests there are: each was a WARNING line carrying its path or body's fault.
    for _ in range(3):
        response = await http_client.fetch(base_url + path, method=method, headers=headers, body=body, raise_error=False)
        assert response.code == status and json.loads(response.body)["error"] in ("forbidden", "invalid_request")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# Session cookies of the form Tornado's version 1 signed values have, each refused with a WARNING carrying the value.
V1_COOKIES = ["abc|123|def", "x|99999999999|" + "0" * 40, "a" * 2000 + "|1|b", "|||", "YWJj|0123|sig"]


@pytest.mark.parametrize("value", V1_COOKIES)
@pytest.mark.gen_test
async def test_a_cookie_shaped_like_an_old_signed_value_is_401_without_a_warning(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    headers = {"Cookie": f"tradestream_session={value}"}
    for path in ("/api/strategies", "/api/events/stream?strategy_id=1"):
        response = await http_client.fetch(base_url + path, headers=headers, raise_error=False)
        assert response.code == 401 and json.loads(response.body)["error"] == "unauthorized"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("target", [b"/api/events/stream?strategy_id=1", b"/api/login"])
@pytest.mark.gen_test
async def test_headers_beyond_the_limit_are_a_json_431(http_client: AsyncHTTPClient, hardened_port: int, target: bytes) -> None:
    # The stream's own path (web/front.py) and the routed ones alike: the headers are read before either.
    answer = await exchange(hardened_port, raw_request("GET", target, [(b"Cookie", b"c" * 70_000)]))
    assert answer.status == 431 and answer.json()["error"] == "headers_too_large"
    assert (await http_client.fetch(f"http://127.0.0.1:{hardened_port}/healthz")).code == 200
