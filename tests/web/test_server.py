"""web/server.py over real sockets: slow clients are dropped, tolerant headers reach the handler.

Descriptor exhaustion needs a process with a lowered RLIMIT_NOFILE: it is tested
on the real streamer and webhook processes (tests/streamer, tests/producers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import tornado.web
from tornado.log import gen_log

from tests.ports import listen_on_free_port
from tests.waiting import async_wait_until
from web import bodies, overflow
from web.server import ConnectionLineThrottle, HardenedHTTPServer

TIMEOUT_S = 0.3
# The contract's deadline: dropped after the timeout; the slack is for a loaded machine, not a measurement.
DROP_DEADLINE_S = TIMEOUT_S + 5.0


class EchoHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish({"last_event_id": self.request.headers.get("Last-Event-ID")})

    def post(self) -> None:
        self.finish({"length": len(self.request.body)})


class LateHandler(tornado.web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(3 * TIMEOUT_S)  # an answer that takes longer than the header timeout: the behaviour under test
        self.finish(b"late")


@asynccontextmanager
async def serving(receive_buffer: int | None = None, **limits: float) -> AsyncIterator[int]:
    """A HardenedHTTPServer of EchoHandler (and LateHandler at /late) on a free port, tolerant of Last-Event-ID."""
    server = HardenedHTTPServer(
        tornado.web.Application([(r"/", EchoHandler), (r"/late", LateHandler)]), tolerant_headers=("Last-Event-ID",), **limits
    )
    async with listening(server, receive_buffer) as port:
        yield port


@asynccontextmanager
async def listening(server: HardenedHTTPServer, receive_buffer: int | None = None) -> AsyncIterator[int]:
    """`server` on a free port of 127.0.0.1 (yielded), stopped and its connections closed after."""
    port = listen_on_free_port(server, receive_buffer)
    try:
        yield port
    finally:
        server.stop()
        await server.close_all_connections()


async def request(port: int, raw: bytes) -> bytes:
    """Send `raw` and read the whole answer (Connection: close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    answer = await asyncio.wait_for(reader.read(), DROP_DEADLINE_S)
    writer.close()
    return answer


async def dropped_within(port: int, first: bytes, trickle: bytes, deadline: float) -> bool:
    """Send `first`, then `trickle` a byte every 20 ms; True once the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first)
    give_up = time.monotonic() + deadline
    try:
        while time.monotonic() < give_up:
            if trickle:
                writer.write(trickle[:1])
                trickle = trickle[1:]
            try:
                if await asyncio.wait_for(reader.read(65536), 0.02) == b"":
                    return True
            except TimeoutError:
                continue  # still open: the pace of the trickle
        return False
    except ConnectionError:
        return True
    finally:
        writer.close()


GET = b"GET / HTTP/1.1\r\nHost: x\r\n"
POST_1000 = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
# (name, bytes sent at once, bytes trickled after them one every 20 ms)
SLOW_CLIENTS = [
    ("connects and sends nothing", b"", b""),
    ("headers never finish", GET, b""),
    ("headers trickle a byte at a time", b"", GET + b"X-Slow: " + b"a" * 10_000),
    ("idle keep-alive after one request", GET + b"\r\n", b""),
    ("announces 1000 bytes, sends 7", POST_1000 + b"1234567", b""),
    ("body trickles a byte at a time", POST_1000, b"b" * 1000),
    ("chunked body stops after a chunk", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", b""),
]


@pytest.mark.parametrize(("first", "trickle"), [pytest.param(*case[1:], id=case[0]) for case in SLOW_CLIENTS])
def test_a_slow_client_is_dropped_after_its_timeout_while_others_are_served(first: bytes, trickle: bytes) -> None:
    async def scenario() -> None:
        async with serving(header_timeout=TIMEOUT_S, body_timeout=TIMEOUT_S) as port:
            slow = asyncio.ensure_future(dropped_within(port, first, trickle, DROP_DEADLINE_S))
            answer = await request(port, POST_1000[:-2] + b"Connection: close\r\n\r\n" + b"x" * 1000)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"length": 1000}')
            assert await slow, f"still open after {DROP_DEADLINE_S} s"

    asyncio.run(scenario())


def test_a_client_within_its_timeouts_is_served() -> None:
    async def scenario() -> bool:
        async with serving(header_timeout=30.0, body_timeout=30.0) as port:
            return await dropped_within(port, POST_1000, b"", deadline=2 * TIMEOUT_S)

    assert not asyncio.run(scenario()), "dropped before its timeout"


def test_an_answer_that_takes_longer_than_the_header_timeout_is_sent() -> None:
    async def scenario() -> bytes:
        async with serving(header_timeout=TIMEOUT_S, body_timeout=TIMEOUT_S) as port:
            return await request(port, b"GET /late HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

    answer = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"late"), answer


def test_keep_alive_requests_each_within_the_header_timeout_are_all_served_however_long_together() -> None:
    timeout, pause, requests = 1.0, 0.4, 4  # every pause well inside the timeout, all of them beyond it

    async def scenario() -> list[bytes]:
        async with serving(header_timeout=timeout, body_timeout=timeout) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answers = []
            try:
                for _ in range(requests):
                    await asyncio.sleep(pause)  # the client's idle time between requests: the behaviour under test
                    writer.write(GET + b"\r\n")
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DROP_DEADLINE_S)
                    length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
                    answers.append(await asyncio.wait_for(reader.readexactly(length), DROP_DEADLINE_S))
            finally:
                writer.close()
            return answers

    assert asyncio.run(scenario()) == [b'{"last_event_id": null}'] * requests


# (name, header line, status, the value the handler sees)
TOLERANT_HEADERS = [
    ("NUL inside an id", b"Last-Event-ID: 1-\x005", 200, "1-?5"),
    ("only a NUL", b"Last-Event-ID: \x00", 200, "?"),
    ("bare CR inside", b"Last-Event-ID: 1\r5", 200, "1?5"),
    ("DEL and other control bytes", b"Last-Event-ID: \x01\x7f\x1f", 200, "???"),
    ("the name in lower case", b"last-event-id: \x00", 200, "?"),
    ("a byte beyond ASCII passes as Latin-1", b"Last-Event-ID: \xff", 200, "\xff"),
    ("a clean id is untouched", b"Last-Event-ID: 1-5", 200, "1-5"),
    ("another header is a JSON 400 (web/readloop.py)", b"X-Other: \x00", 400, None),
    ("a longer name is another header", b"Last-Event-IDs: \x00", 400, None),
]


@pytest.mark.parametrize(("line", "status", "seen"), [pytest.param(*case[1:], id=case[0]) for case in TOLERANT_HEADERS])
def test_control_bytes_in_a_tolerant_header_become_question_marks(line: bytes, status: int, seen: str | None) -> None:
    async def scenario() -> bytes:
        async with serving() as port:
            return await request(port, GET + line + b"\r\nConnection: close\r\n\r\n")

    answer = asyncio.run(scenario())
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())
    if seen is not None:
        assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"last_event_id": seen}


def _record(template: str, created: float) -> logging.LogRecord:
    record = logging.LogRecord("tornado.general", logging.INFO, __file__, 1, template, ("127.0.0.1",), None)
    record.created = created
    return record


def test_tornados_per_connection_lines_are_throttled_with_a_count() -> None:
    throttle = ConnectionLineThrottle()
    body = [_record("Timeout reading body from %s", t / 10) for t in range(101)]
    passed = [record for record in body if throttle.filter(record)]
    assert [record.created for record in passed] == [0.0, 10.0]
    assert passed[1].getMessage() == "Timeout reading body from 127.0.0.1 (and 99 more since the last report)"
    other = _record("something else from %s", 0.5)
    assert throttle.filter(other) and other.getMessage() == "something else from 127.0.0.1"


def _answered_431(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    return (head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n") and b"Connection: close" in head
            and json.loads(body) == {"error": "headers_too_large", "message": "the request's headers exceed 65536 bytes"})


@pytest.fixture
def fresh_line_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tornado's logger without this process's ConnectionLineThrottle: the next server installs a new one.

    The throttle is one per process: a line another test provoked within the interval would silence this test's.
    """
    monkeypatch.setattr(gen_log, "filters", [f for f in gen_log.filters if not isinstance(f, ConnectionLineThrottle)])


@pytest.mark.usefixtures("fresh_line_throttle")
def test_headers_beyond_the_limit_are_answered_431_with_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    # Tornado writes "Unsatisfiable read, closing connection: ..." (INFO) for each such connection: an outsider decides how many.
    caplog.set_level(logging.INFO, logger="tornado.general")
    oversized = GET + b"X-Big: " + b"b" * 70_000 + b"\r\n\r\n"

    async def scenario() -> list[bytes]:
        async with serving() as port:
            answers = [await request(port, oversized) for _ in range(5)]
            assert (await request(port, GET + b"Connection: close\r\n\r\n")).startswith(b"HTTP/1.1 200")
            return answers

    assert all(_answered_431(answer) for answer in asyncio.run(scenario()))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Unsatisfiable read")]
    assert len(lines) == 1, lines


async def _send_slowly_then_read(port: int, raw: bytes) -> bytes:
    """Send `raw` through a small send buffer, reading meanwhile (the answer comes before the end), then read to EOF."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(raw)
    drained = asyncio.ensure_future(writer.drain())
    try:
        answer = await asyncio.wait_for(reader.read(), DROP_DEADLINE_S)
        await asyncio.wait_for(drained, DROP_DEADLINE_S)  # a reset while sending raises here
        return answer
    finally:
        drained.cancel()
        writer.close()


# Socket buffers of a few KiB: most of what the client sends is still to come when the server refuses it.
SMALL_BUFFER = 16_384


def test_the_answer_survives_what_the_client_still_sends_after_the_limit() -> None:
    # Closing a socket with unread data resets the connection, and a client still sending then fails before it
    # reads: the server lingers, reading and dropping the rest, so the client gets its 431 (nginx's lingering close).
    async def scenario() -> bytes:
        async with serving(receive_buffer=SMALL_BUFFER) as port:
            return await _send_slowly_then_read(port, GET + b"X-Big: " + b"b" * 600_000 + b"\r\n\r\n")

    assert _answered_431(asyncio.run(scenario()))


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_client_that_sends_without_end_is_cut_after_the_linger_budget() -> None:
    async def scenario() -> None:
        async with serving(receive_buffer=SMALL_BUFFER) as port:
            with pytest.raises(ConnectionError):  # reset while still sending, once DISCARD_CAP bytes are dropped
                await _send_slowly_then_read(port, GET + b"X-Big: " + b"b" * (2 * bodies.DISCARD_CAP))

    asyncio.run(scenario())


def test_a_refused_client_that_never_closes_is_let_go_after_the_linger_deadline() -> None:
    async def scenario() -> None:
        async with serving() as port:
            baseline = _open_descriptors()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(GET + b"X-Big: " + b"b" * 70_000)
            assert _answered_431(await asyncio.wait_for(reader.read(), DROP_DEADLINE_S))  # then EOF; the client stays
            await async_wait_until(lambda: _open_descriptors() <= baseline + 1, timeout=overflow.LINGER_S + DROP_DEADLINE_S,
                                   what="the server's lingering descriptor closed")  # + 1: the client's own end
            writer.close()

    asyncio.run(scenario())


def test_a_chunk_size_line_beyond_its_limit_is_closed_unanswered() -> None:
    # Tornado reads a chunk-size line of at most 64 bytes: a body's error, not headers: no 431.
    chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 200 + b"\r\n"

    async def scenario() -> bytes:
        async with serving() as port:
            try:
                return await request(port, chunked)
            except ConnectionResetError:
                return b""

    assert asyncio.run(scenario()) == b""


HEAD_REFUSED = "the request's head is not valid HTTP/1.1"
BODY_REFUSED = "the request's body framing is not valid HTTP/1.1"
# (name, request, status, error, message): what the read loop answers when Tornado refuses a request, with max_body_size 1000.
READ_REFUSALS = [
    ("no Host header", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 400, "invalid_request", HEAD_REFUSED),
    ("two Host values", b"GET / HTTP/1.1\r\nHost: a,b\r\nConnection: close\r\n\r\n", 400, "invalid_request", HEAD_REFUSED),
    ("a query of more fields than Tornado parses", b"GET /?" + b"a=1&" * 1001 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
     400, "invalid_request", HEAD_REFUSED),
    ("a Content-Length that is no number", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\nConnection: close\r\n\r\n",
     400, "invalid_request", BODY_REFUSED),
    ("a bad chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n",
     400, "invalid_request", BODY_REFUSED),
    ("a declared body past the limit", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\nConnection: close\r\n\r\n",
     413, "body_too_large", bodies.TOO_LARGE.message),
    ("chunks adding up past the limit", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
     + b"200\r\n" + b"x" * 512 + b"\r\n" + b"200\r\n" + b"x" * 512 + b"\r\n0\r\n\r\n", 413, "body_too_large", bodies.TOO_LARGE.message),
]


@pytest.mark.parametrize(("raw", "status", "error", "message"), [pytest.param(*case[1:], id=case[0]) for case in READ_REFUSALS])
def test_a_request_tornado_refuses_is_answered_what_it_got_wrong(raw: bytes, status: int, error: str, message: str) -> None:
    # A missing Host or an over-long query is the head's fault (not "body framing"), a body past the limit a 413.
    async def scenario() -> bytes:
        async with serving(max_body_size=1000) as port:
            return await request(port, raw)

    head, _, body = asyncio.run(scenario()).partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert json.loads(body) == {"error": error, "message": message}
