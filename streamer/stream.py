"""`GET /api/events/stream?strategy_id=N`: admission, then the socket is handed to the hub.

Admission (`open_stream`) answers with ordinary JSON errors (401, 400, 429,
403, 409, 503). Once the key's subscription is live it detaches the connection
from Tornado, writes the response head itself (close-delimited, which HTTP/1.0
proxies understand too) and registers the socket with the hub, with no await
between the subscription and the registration: no event can slip between, and
no `end_sessions` either (the credential is checked against them last, there).

Two ways in, one admission: `LeanStream` serves a bodiless GET in front of the
Application's routing (web/front.py; the process's server), `StreamHandler`
every other request of the path (a 405 for other methods) and apps built
without the front.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.client import responses

from tornado import httputil, iostream
from tornado.escape import parse_qs_bytes
from tornado.log import app_log

from bus.errors import BusUnavailable
from bus.replay import Position
from bus.topics import StreamKey
from streamer import queries, sse
from streamer.access import log_access
from streamer.handlers import (
    DEFAULT_HEADERS,
    NOT_YOURS,
    STREAMER_ERRORS,
    UNAUTHORIZED,
    BaseHandler,
    authenticate,
    bus_answer,
    strategy_id_of,
)
from streamer.services import Services
from web.errors import ApiError, write_error_json
from web.front import FrontRoute

log = logging.getLogger(__name__)

STREAM_PATH = "/api/events/stream"
LAST_EVENT_ID = "Last-Event-ID"
# A request with any of these may have a body, which Tornado parses before the handler runs (and may refuse): the Application's.
BODY_HEADERS = ("Content-Length", "Transfer-Encoding", "Content-Type")

RESPONSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"Connection: close\r\n"
    b"\r\n"
)


def preamble(key: StreamKey, head: Position, bus_up: bool) -> bytes:
    """The response head, `retry:` and the `connection` event of a new stream."""
    return RESPONSE_HEAD + sse.RETRY_FRAME + sse.connection_frame(key.user_id, key.strategy_id, str(head), bus_up)


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What admission reads of a stream's request, whichever way it came in."""

    headers: httputil.HTTPHeaders
    query_arguments: dict[str, list[bytes]]
    remote_ip: str


async def open_stream(services: Services, request: StreamRequest, detach: Callable[[], iostream.IOStream]) -> None:
    """Check who may stream what, subscribe, and hand the socket `detach` gives to the hub; an ApiError otherwise."""
    viewer, read_at = await authenticate(services.auth, request.headers, services.config.secret)
    strategy_id = strategy_id_of(request.query_arguments)
    hub = services.hub
    if hub.closing:
        raise ApiError(503, "shutting_down", "The server is shutting down; reconnect to another.")
    if not hub.admission.reserve(viewer.id, time.monotonic()):
        services.stats.rejected_streams += 1
        raise ApiError(429, "too_many_streams", f"At most {services.config.max_streams_per_user} open streams per user.")
    key = StreamKey(viewer.id, strategy_id)
    try:
        checked_at = await _check_access(services, key)
        head = await _subscribe(services, key)
    except BaseException:
        hub.admission.release(viewer.id)
        raise
    # From here to hub.open, no await: the subscription is live at `head`.
    ended = services.auth.ended(viewer, read_at)
    sock = None if ended else _take_socket(detach, request.remote_ip)
    if sock is None:
        hub.unsubscribe(key)
        hub.admission.release(viewer.id)
        if ended:
            raise ApiError(401, "unauthorized", UNAUTHORIZED)
        return
    hub.open(sock, key, head, preamble(key, head, hub.subscriber.broker_up), last_event_id(request), checked_at, viewer.session_id)
    excess = hub.admission.excess(viewer.id, time.monotonic())  # admitted in a race with another streamer?
    if excess:
        hub.shed(viewer.id, excess)


async def _check_access(services: Services, key: StreamKey) -> float:
    """403 or 409 unless the viewer may stream the key; when the answer was read."""
    refusal, checked_at = await services.stream_refusal(key)
    if refusal == queries.FORBIDDEN:
        raise ApiError(403, "forbidden", NOT_YOURS)
    if refusal == queries.INACTIVE:
        raise ApiError(409, "strategy_inactive", "This strategy is inactive.")
    return checked_at


async def _subscribe(services: Services, key: StreamKey) -> Position:
    with bus_answer(BusUnavailable):
        return await services.hub.subscribe(key)


def _take_socket(detach: Callable[[], iostream.IOStream], remote_ip: str) -> socket.socket | None:
    """Detach the connection from Tornado and keep its socket; None if the client already left."""
    stream = detach()
    try:
        if stream.closed() or stream.socket is None or departed(stream.socket):
            return None
        # A duplicate outlives the IOStream, which is closed to drop its loop registration.
        return stream.socket.dup()
    except OSError as exc:  # out of file descriptors, most likely
        log.warning("stream of %s dropped: %s", remote_ip, exc)
        return None
    finally:
        stream.close()


def departed(sock: socket.socket) -> bool:
    """Whether the peer has closed or reset the connection (what it sent and nobody read yet stays unread)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def last_event_id(request: StreamRequest) -> str | None:
    """The `Last-Event-ID` header (set by EventSource on reconnect), else the query parameter."""
    header = request.headers.get(LAST_EVENT_ID)
    if header:
        return header
    values = request.query_arguments.get("last_event_id")
    return values[-1].decode("utf-8", "replace") if values else None


class StreamHandler(BaseHandler):
    """The stream's path in the Application: `open_stream` for a GET, Tornado's 405 JSON for other methods."""

    async def get(self) -> None:
        request = StreamRequest(self.request.headers, self.request.query_arguments, self.request.remote_ip or "")
        await open_stream(self.services, request, self.detach)


def stream_route(services: Services) -> FrontRoute:
    """web/front.py's route of `GET /api/events/stream`: a LeanStream, unless the request may carry a body."""

    def route(
        start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders, connection: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate | None:
        if any(name in headers for name in BODY_HEADERS):
            return None
        return LeanStream(services, start_line, headers, connection)

    return route


class LeanStream(httputil.HTTPMessageDelegate):
    """A bodiless `GET /api/events/stream` served without the Application: `open_stream`, errors written as a handler's.

    Measured in the connect burst of the dashboard shape (docs/benchmarks.md, issue 13,
    fourth session): Tornado's routing, `_HandlerDelegate`, RequestHandler and
    `_execute`, and the HTTPServerRequest's deep copy of the query, were ~30 % of
    a connect's CPU. Everything before the headers arrive (timeouts, limits,
    tolerant headers) and after an error (keep-alive) is the HTTP/1 read loop's, as for any request.
    """

    # The read loop need not watch the stream while admission runs (web/readloop.py; an epoll change,
    # ~8 % of a connect): nothing here stops on a departure, and `_take_socket` looks whether the
    # client is still there before the hub gets the socket (whose reader then sees any later close).
    checks_departure = True

    def __init__(self, services: Services, start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders,
                 connection: httputil.HTTPConnection) -> None:
        self.services = services
        self.connection = connection
        self.uri = start_line.path
        self.started = time.time()
        # Tornado's request context (web/server.py's connection): the peer's address, as HTTPServerRequest reads it.
        remote_ip = getattr(getattr(connection, "context", None), "remote_ip", None) or ""
        query = parse_query(self.uri)
        self.request = StreamRequest(headers, query, remote_ip)
        self.detached = False
        self.task: asyncio.Task[None] | None = None  # held here: the event loop keeps only a weak reference to a task

    def headers_received(
        self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine, headers: httputil.HTTPHeaders
    ) -> Awaitable[None] | None:
        return None

    def finish(self) -> None:
        # As Tornado's _HandlerDelegate: the request runs once it has been read, while the read loop
        # waits for its answer (and watches for the client leaving, which open_stream then sees).
        self.task = asyncio.ensure_future(self._serve())

    async def _serve(self) -> None:
        try:
            await open_stream(self.services, self.request, self._detach)
        except Exception as exc:
            self._answer(exc)

    def _detach(self) -> iostream.IOStream:
        self.detached = True
        return self.connection.detach()  # type: ignore[attr-defined, no-any-return]  # HTTP1Connection's, as RequestHandler.detach uses

    def _answer(self, exc: Exception) -> None:
        """Write the error as JsonErrors would, log as RequestHandler.log_exception and log_request would."""
        error = exc if isinstance(exc, ApiError) else ApiError.of(exc, STREAMER_ERRORS)
        if error is None:
            app_log.error("Uncaught exception GET %s (%s)", self.uri, self.request.remote_ip, exc_info=exc)
            error = ApiError(500, "internal_error", responses[500])
        if self.detached:
            return  # extra errors after the connection was handed over: logged above, nothing to send
        write_error_json(self.connection, error, DEFAULT_HEADERS)
        log_access(error.status_code, STREAM_PATH, "GET", self.uri, self.request.remote_ip, time.time() - self.started)


def parse_query(uri: str) -> dict[str, list[bytes]]:
    """The query arguments of a request's URI, as HTTPServerRequest parses them."""
    return parse_qs_bytes(uri.partition("?")[2], keep_blank_values=True)
