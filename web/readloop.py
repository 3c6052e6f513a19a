"""The HTTP/1 read loop both processes serve through: Tornado 6.6's, with tolerant headers and a cheaper connect.

`TolerantServerConnection._server_request_loop` and
`TolerantConnection._read_message_inner` are Tornado 6.6's (http1connection.py;
the server side only: these connections never read responses), with these changes:

- The connection class (Tornado offers no hook for it), whose header parsing
  applies `tolerate` first.
- A malformed request (request line, a header line, a Host header or query
  string Tornado's request object refuses, the body's framing) is answered the
  contract's JSON 400 `invalid_request`, not Tornado's bare `400 Bad Request`
  head without a body, and the connection closes; a body past the connection's
  limit (a declared Content-Length, or chunks adding up past it) is the JSON 413
  `body_too_large` of web/bodies.py instead.
- The header deadline is one loop timer that closes the connection, cancelled
  once the headers are in, and none when they are already buffered (a
  pipelined request): Tornado wraps every header read in `gen.with_timeout` (a
  second future, two chained callbacks and the timer), ~8 % of a stream's
  connect in the dashboard shape's burst (docs/benchmarks.md, issue 13). A
  request whose headers are late is closed as before, without a line.
- While the answer is pending, the stream is watched for the client leaving
  (`set_close_callback`: the socket registered for reads again, an epoll
  change, ~8 % of a connect) unless the delegate says it checks that itself
  (`checks_departure`: the streamer's stream, which hands its socket to the hub
  and looks whether the client is still there when it does). Closing the
  server's connection (`close_all_connections` at shutdown) still ends that
  request's wait at once.

tests/web pin the behaviour.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from typing import cast

from tornado import gen, httputil, iostream
from tornado.http1connection import (
    HTTP1Connection,
    HTTP1ConnectionParameters,
    HTTP1ServerConnection,
    _ExceptionLoggingContext,
)
from tornado.log import app_log, gen_log

from web.bodies import TOO_LARGE
from web.errors import ApiError, raw_error_response

# Tornado's forbidden header characters (httputil), CR and LF included: LF cannot occur inside a header line.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# Anything Tornado would refuse in a header block besides its CRLF line ends: the cheap test before any rewrite.
_SUSPECT = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)")


# A malformed request line or header line (or a header value with control bytes), and a malformed body framing
# (a Content-Length that is no number, a bad chunk): fixed texts, the request's bytes are not echoed.
MALFORMED = raw_error_response(ApiError(400, "invalid_request", "the request's head is not valid HTTP/1.1"))
MALFORMED_BODY = raw_error_response(ApiError(400, "invalid_request", "the request's body framing is not valid HTTP/1.1"))
BODY_TOO_LARGE = raw_error_response(TOO_LARGE)
# Tornado's texts (http1connection.py) for a body past max_body_size: a size refusal, not a framing error.
_TOO_LARGE_TEXTS = frozenset({"Content-Length too long", "chunked body too large"})


def refusal(error: httputil.HTTPInputError, body_started: bool) -> bytes:
    """The answer to a request Tornado's read refused: its head (start line, headers, Host, query), its body's size or framing."""
    if not body_started:
        return MALFORMED
    return BODY_TOO_LARGE if str(error) in _TOO_LARGE_TEXTS else MALFORMED_BODY


def tolerant_pattern(names: Iterable[str]) -> re.Pattern[bytes] | None:
    """The header lines whose values may carry control bytes, or None for none."""
    alternatives = b"|".join(re.escape(name.encode("ascii")) for name in names)
    if not alternatives:
        return None
    return re.compile(rb"^(" + alternatives + rb":)([^\n]*?)(\r?)$", re.IGNORECASE | re.MULTILINE)


def tolerate(block: bytes, pattern: re.Pattern[bytes] | None) -> bytes:
    """`block` (a header block) with the control bytes of the tolerant headers' values replaced by "?".

    RFC 9110 section 5.5 lets a recipient reject such a message or replace NUL, CR
    and LF with a space; the contract forbids the rejection (an unusable
    Last-Event-ID gets `resync`), and a space would be stripped and make
    "1-5<NUL>" read as the valid id "1-5": "?" keeps the value unusable.
    """
    if pattern is None or _SUSPECT.search(block) is None:
        return block
    return pattern.sub(lambda m: m[1] + _CONTROL.sub(b"?", m[2]) + m[3], block)


def checks_departure(delegate: httputil.HTTPMessageDelegate) -> bool:
    """Whether `delegate` looks for a departed client itself, so the read loop need not watch its stream."""
    return getattr(delegate, "checks_departure", False) is True


class TolerantConnection(HTTP1Connection):
    """One request's HTTP/1 connection (server side): tolerant header parsing, the cheaper deadline and watch."""

    def __init__(self, stream: iostream.IOStream, params: HTTP1ConnectionParameters, context: object,
                 tolerant: re.Pattern[bytes] | None) -> None:
        super().__init__(stream, False, params, context)
        self._tolerant = tolerant

    def _parse_headers(self, data: bytes) -> tuple[str, httputil.HTTPHeaders]:
        return super()._parse_headers(tolerate(data, self._tolerant))

    async def _read_headers(self) -> bytes:
        """The header block; StreamClosedError if the header timeout closed the connection first."""
        # Typed Awaitable, a Future in fact (iostream's _start_read).
        future = cast("asyncio.Future[bytes]", self.stream.read_until_regex(b"\r?\n\r?\n", max_bytes=self.params.max_header_size))
        timeout = self.params.header_timeout
        if timeout is None or future.done():
            return await future
        deadline = asyncio.get_running_loop().call_later(timeout, self.close)
        try:
            return await future
        finally:
            deadline.cancel()

    async def _read_message_inner(self, delegate: httputil.HTTPMessageDelegate, num_1xx: int = 0) -> bool:
        need_delegate_close = False
        body_started = False  # what a refusal is about: the head (HTTPServerRequest checks Host and the query), or the body
        try:
            header_data = await self._read_headers()
            start_line_str, headers = self._parse_headers(header_data)
            start_line = httputil.parse_request_start_line(start_line_str)
            self._request_start_line = start_line
            self._request_headers = headers
            self._disconnect_on_finish = not self._can_keep_alive(start_line, headers)
            need_delegate_close = True
            with _ExceptionLoggingContext(app_log):
                header_recv_future = delegate.headers_received(start_line, headers)
                if header_recv_future is not None:
                    await header_recv_future
            if self.stream is None:
                # We've been detached.
                need_delegate_close = False
                return False
            if headers.get("Expect") == "100-continue" and not self._write_finished:
                self.stream.write(b"HTTP/1.1 100 (Continue)\r\n\r\n")
            body_started = True
            body_future = self._read_body(0, headers, delegate)
            if body_future is not None:
                if self._body_timeout is None:
                    await body_future
                else:
                    try:
                        await gen.with_timeout(
                            self.stream.io_loop.time() + self._body_timeout,
                            body_future,
                            quiet_exceptions=iostream.StreamClosedError,
                        )
                    except TimeoutError:
                        gen_log.info("Timeout reading body from %s", self.context)
                        self.stream.close()
                        return False
            self._read_finished = True
            if not self._write_finished:
                with _ExceptionLoggingContext(app_log):
                    delegate.finish()
                # If finish() raised, the delegate is told that the connection
                # is closed, as when any of its other methods raise.
                need_delegate_close = False
            # Waiting for the application's answer, not detached: watch for the client leaving
            # (not needed while reading), unless the delegate does that itself.
            if not self._finish_future.done() and self.stream is not None and not self.stream.closed():
                if not checks_departure(delegate):
                    self.stream.set_close_callback(self._on_connection_close)
                await self._finish_future
            if self.stream is None:
                return False
        except httputil.HTTPInputError as e:
            gen_log.info("Malformed HTTP message from %s: %s", self.context, e)
            # The contract's JSON error (Tornado's is a bare head), then the connection closes.
            if self._response_start_line is None:  # nothing answered yet (a handler may stream before a bad chunk)
                await self.stream.write(refusal(e, body_started))
            self.close()
            return False
        finally:
            if need_delegate_close:
                with _ExceptionLoggingContext(app_log):
                    delegate.on_connection_close()
            self._clear_callbacks()
        return True


class TolerantServerConnection(HTTP1ServerConnection):
    """HTTP1ServerConnection making TolerantConnections; closing it ends the wait of the request it serves."""

    def __init__(self, stream: iostream.IOStream, params: HTTP1ConnectionParameters, context: object,
                 tolerant: re.Pattern[bytes] | None) -> None:
        super().__init__(stream, params, context)
        self._tolerant = tolerant
        self._request: TolerantConnection | None = None

    async def close(self) -> None:
        if self._request is not None:
            self._request.close()  # its wait for the answer ends even when its stream is not watched
        await super().close()

    async def _server_request_loop(self, delegate: httputil.HTTPServerConnectionDelegate) -> None:
        try:
            while True:
                conn = self._request = TolerantConnection(self.stream, self.params, self.context, self._tolerant)
                request_delegate = delegate.start_request(self, conn)
                try:
                    ret = await conn.read_response(request_delegate)
                except (iostream.StreamClosedError, iostream.UnsatisfiableReadError, asyncio.CancelledError):
                    return
                except Exception:
                    gen_log.error("Uncaught exception", exc_info=True)
                    conn.close()
                    return
                if not ret:
                    return
                await asyncio.sleep(0)
        finally:
            self._request = None
            delegate.on_close(self)
