"""web/front.py over real sockets: an exact (method, path) goes to its route, everything else to the Application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import tornado.web
from tornado import httputil

from tests.ports import listen_on_free_port
from tests.waiting import async_wait_until
from tests.web.test_server import DROP_DEADLINE_S, TIMEOUT_S, dropped_within, listening, request
from web.front import FrontDoor
from web.server import HardenedHTTPServer


class AppHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish(b"app")

    def post(self) -> None:
        self.finish(b"app")


class Lean(httputil.HTTPMessageDelegate):
    """Answers `lean <uri>` once the request has been read."""

    def __init__(self, start_line: httputil.RequestStartLine, connection: httputil.HTTPConnection) -> None:
        self.uri, self.connection = start_line.path, connection

    def finish(self) -> None:
        body = f"lean {self.uri}".encode()
        headers = httputil.HTTPHeaders({"Content-Length": str(len(body))})
        self.connection.write_headers(httputil.ResponseStartLine("HTTP/1.1", 200, "OK"), headers, body)
        self.connection.finish()


class Unanswered(httputil.HTTPMessageDelegate):
    """Never answers, and says it looks for a departed client itself (web/readloop.py need not watch)."""

    checks_departure = True
    started = 0  # how many were routed, for a test to wait on

    def finish(self) -> None:
        Unanswered.started += 1


def lean(start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders,
         connection: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate | None:
    if "X-Unanswered" in headers:
        return Unanswered()
    return None if "X-Decline" in headers else Lean(start_line, connection)


@asynccontextmanager
async def serving() -> AsyncIterator[int]:
    """A HardenedHTTPServer of a FrontDoor: `GET /lean` lean, the Application behind it."""
    app = tornado.web.Application([(r"/lean", AppHandler), (r"/.*", AppHandler)])
    server = HardenedHTTPServer(FrontDoor(app, {("GET", "/lean"): lean}), header_timeout=TIMEOUT_S, body_timeout=TIMEOUT_S)
    async with listening(server) as port:
        yield port


# (name, request line and extra headers, the body the answer ends with)
REQUESTS = [
    ("the route's method and path", b"GET /lean", b"lean /lean"),
    ("a query string does not change the path", b"GET /lean?a=1&b", b"lean /lean?a=1&b"),
    ("another method of the path", b"POST /lean", b"app"),
    ("another path", b"GET /other", b"app"),
    ("a longer path", b"GET /lean/", b"app"),
    ("the path percent-encoded (Tornado does not decode it to route either)", b"GET /%6Cean", b"app"),
    ("a route that declines", b"GET /lean HTTP/1.1\r\nX-Decline: 1", b"app"),
]


@pytest.mark.parametrize(("line", "ends"), [pytest.param(*case[1:], id=case[0]) for case in REQUESTS])
def test_a_request_goes_to_its_route_only_for_the_exact_method_and_path(line: bytes, ends: bytes) -> None:
    async def scenario() -> bytes:
        async with serving() as port:
            start = line if b"HTTP/1.1" in line else line + b" HTTP/1.1"
            return await request(port, start + b"\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    answer = asyncio.run(scenario())
    assert answer.endswith(ends), answer


def test_both_kinds_of_request_share_one_keep_alive_connection() -> None:
    async def scenario() -> bytes:
        async with serving() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /lean HTTP/1.1\r\nHost: x\r\n\r\nGET /other HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"GET /lean?again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), DROP_DEADLINE_S)
            writer.close()
            return answer

    answer = asyncio.run(scenario())
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert answer.index(b"lean /lean") < answer.index(b"app") < answer.index(b"lean /lean?again")


def test_a_request_for_the_route_whose_headers_never_finish_is_dropped_after_the_header_timeout() -> None:
    async def scenario() -> bool:
        async with serving() as port:
            return await dropped_within(port, b"GET /lean HTTP/1.1\r\nHost: x\r\n", b"", DROP_DEADLINE_S)

    assert asyncio.run(scenario()), f"still open after {DROP_DEADLINE_S} s"


def test_closing_the_servers_connections_ends_a_request_whose_stream_the_read_loop_does_not_watch() -> None:
    async def scenario() -> bytes:
        app = tornado.web.Application([(r"/.*", AppHandler)])
        server = HardenedHTTPServer(FrontDoor(app, {("GET", "/lean"): lean}))
        port = listen_on_free_port(server)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /lean HTTP/1.1\r\nHost: x\r\nX-Unanswered: 1\r\n\r\n")
        before = Unanswered.started
        await async_wait_until(lambda: Unanswered.started > before, what="the request to be read")
        server.stop()
        closing = asyncio.ensure_future(server.close_all_connections())  # as the streamer's shutdown
        # Not wait_for: cancelled, Tornado's serving loop returns as if it had ended.
        done, _ = await asyncio.wait({closing}, timeout=DROP_DEADLINE_S)
        closing.cancel()
        answer = await asyncio.wait_for(reader.read(), DROP_DEADLINE_S)
        writer.close()
        assert done, f"the request still held its connection after {DROP_DEADLINE_S} s"
        return answer

    assert asyncio.run(scenario()) == b""  # closed, unanswered
