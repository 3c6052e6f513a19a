"""An HTTPServer that survives hostile clients; the streamer and the webhook both serve through it.

- Slow clients: the headers of a request must arrive within `header_timeout`
  (Tornado's idle_connection_timeout, which also closes a keep-alive connection
  idle that long) and its body within `body_timeout`; otherwise the connection
  is closed. An idle or stalled connection costs a descriptor until then, no more.
- Descriptor exhaustion: when accept() fails (EMFILE, ENFILE, ENOBUFS, ...)
  Tornado raises out of its accept handler on every loop turn while the
  listener stays readable: a busy loop writing a traceback each time (measured
  3.0 CPU-s and 288,000 log lines in 3 s). Here the listener's reader is removed
  for ACCEPT_PAUSE_S and added back: open connections keep being served, the log
  gets one line per REPORT_INTERVAL_S with a count, and accepting resumes by
  itself once descriptors are free (web/backoff.py decides).
- Headers named in `tolerant_headers` (the streamer's Last-Event-ID) may carry
  control bytes: they become "?" instead of Tornado's bare 400, so the handler
  sees an unusable value and answers it as the contract says (web/readloop.py,
  the HTTP/1 read loop, Tornado's with that and a cheaper connect).
- Headers beyond the size limit (64 KiB) are answered 431 `headers_too_large`
  before the connection closes (web/overflow.py), not dropped unanswered.
- Tornado's own per-connection INFO lines (a body timeout, a malformed request,
  headers over the size limit) are throttled the same way: an outsider decides
  how many there are.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

from tornado import httputil, iostream
from tornado.httpserver import HTTPServer, _HTTPRequestContext
from tornado.ioloop import IOLoop
from tornado.log import gen_log

from web.backoff import AcceptBackoff, ReportThrottle
from web.overflow import AnsweringIOStream
from web.readloop import TolerantServerConnection, tolerant_pattern

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 10.0
# As many accepts per readiness as Tornado's own handler (its _DEFAULT_BACKLOG): other work is not starved.
ACCEPT_BATCH = 128
# accept(2) on Linux hands pending network errors of the new connection to the caller: that one is lost, go on.
_CONNECTION_ERRORS = frozenset({
    errno.ECONNABORTED, errno.EPROTO, errno.ENOPROTOOPT, errno.ENETDOWN, errno.ENETUNREACH,
    errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.ENONET, errno.EOPNOTSUPP,
})


class HardenedHTTPServer(HTTPServer):
    """tornado's HTTPServer with header and body timeouts, accept back-off and tolerant headers."""

    def initialize(  # type: ignore[override]  # keyword-only additions; the rest passes through
        self,
        request_callback: httputil.HTTPServerConnectionDelegate | Callable[[httputil.HTTPServerRequest], None],
        *,
        header_timeout: float = HEADER_TIMEOUT_S,
        body_timeout: float = BODY_TIMEOUT_S,
        tolerant_headers: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        super().initialize(request_callback, idle_connection_timeout=header_timeout, body_timeout=body_timeout, **kwargs)
        self.backoff = AcceptBackoff()
        self._tolerant = tolerant_pattern(tolerant_headers)
        throttle_connection_lines()

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """Accept on `sockets` with the back-off (TCPServer.add_sockets, another accept handler)."""
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = Acceptor(sock, self._handle_connection, self.backoff).stop

    def _handle_connection(self, connection: socket.socket, address: Any) -> None:
        """TCPServer's, with a stream that answers headers beyond the limit (TLS is a proxy's job here: Tornado's own)."""
        if self.ssl_options is not None:
            super()._handle_connection(connection, address)
            return
        try:
            stream = AnsweringIOStream(connection, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size)
            self.handle_stream(stream, address)
        except Exception:
            log.error("Error in connection callback", exc_info=True)

    def handle_stream(self, stream: iostream.IOStream, address: tuple[Any, ...]) -> None:
        """HTTPServer.handle_stream, with a connection whose header parsing tolerates `tolerant_headers`."""
        context = _HTTPRequestContext(stream, address, self.protocol, self.trusted_downstream)
        conn = TolerantServerConnection(stream, self.conn_params, context, self._tolerant)
        self._connections.add(conn)
        conn.start_serving(self)


class Acceptor:
    """The reader of one listening socket: accepts in batches, pauses while accept() fails."""

    def __init__(self, sock: socket.socket, on_connection: Callable[[socket.socket, Any], None], backoff: AcceptBackoff) -> None:
        self.sock, self.on_connection, self.backoff = sock, on_connection, backoff
        self.io_loop = IOLoop.current()
        self._resume: object | None = None
        self._stopped = False
        self.io_loop.add_handler(sock, self._ready, IOLoop.READ)

    def _ready(self, fd: Any, events: int) -> None:
        for _ in range(ACCEPT_BATCH):
            if self._stopped or self._resume is not None:
                return
            try:
                connection, address = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _CONNECTION_ERRORS:
                    continue
                self._pause(exc)
                return
            recovered = self.backoff.accepted(self.io_loop.time())
            if recovered is not None:
                log.info("%s", recovered)
            self.on_connection(connection, address)

    def _pause(self, exc: OSError) -> None:
        reason = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        pause, line = self.backoff.failed(f"{reason}: {exc.strerror}", self.io_loop.time())
        if line is not None:
            log.warning("%s", line)
        self.io_loop.remove_handler(self.sock)
        self._resume = self.io_loop.call_later(pause, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._resume = None
        if not self._stopped:
            self.io_loop.add_handler(self.sock, self._ready, IOLoop.READ)

    def stop(self) -> None:
        """Stop accepting for good (the server's stop closes the socket afterwards)."""
        self._stopped = True
        if self._resume is not None:
            self.io_loop.remove_timeout(self._resume)
            self._resume = None
        else:
            self.io_loop.remove_handler(self.sock)


class ConnectionLineThrottle(logging.Filter):
    """Lets one of each of Tornado's per-connection lines through per interval, with the count."""

    TEMPLATES = frozenset({"Timeout reading body from %s", "Malformed HTTP message from %s: %s"})
    # Written already formatted (iostream's `"..." % e`): headers beyond max_header_size, a chunk-size line too long.
    PREFIXES = ("Unsatisfiable read, closing connection: ",)

    def __init__(self) -> None:
        super().__init__()
        self._throttles: dict[str, ReportThrottle] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = record.msg if record.msg in self.TEMPLATES else next(
            (prefix for prefix in self.PREFIXES if isinstance(record.msg, str) and record.msg.startswith(prefix)), None)
        if kind is None:
            return True
        count = self._throttles.setdefault(kind, ReportThrottle()).note(record.created)
        if count is None:
            return False
        if count > 1:
            record.msg = f"{record.msg} (and {count - 1} more since the last report)"
        return True


def throttle_connection_lines() -> None:
    """Install ConnectionLineThrottle on Tornado's general logger, once per process."""
    if not any(isinstance(f, ConnectionLineThrottle) for f in gen_log.filters):
        gen_log.addFilter(ConnectionLineThrottle())
