"""Headers beyond the size limit get an answer, 431, instead of a bare close. Wiring of web/server.py.

Tornado's IOStream meets a header block longer than `max_header_size` (64 KiB)
by closing the connection unanswered: the client cannot tell a refusal from a
crash. Here the stream, as it closes for that reason, first writes

    HTTP/1.1 431 Request Header Fields Too Large   {"error": "headers_too_large", ...}

(RFC 6585) on a duplicate of its socket, shuts the sending side and lingers:
whatever the client still sends is read and dropped for up to LINGER_S (at
most web/bodies.py's DISCARD_CAP, as for an oversized body), so that closing
with unread data does not reset the connection and destroy the answer before
the client reads it (nginx's lingering close). Then the duplicate is closed. A refused connection costs one
descriptor for LINGER_S at most, as a slow client costs one for the header
timeout. The chunk-size line of a body over its 64 bytes is not headers: it is
closed as before.
"""

from __future__ import annotations

import socket
from typing import Any

from tornado import iostream
from tornado.ioloop import IOLoop

from web.bodies import DISCARD_CAP
from web.errors import ApiError, raw_error_response

LINGER_S = 2.0
READ_BYTES = 65536


def answer(limit: int | None) -> bytes:
    """The whole 431 response, headers and JSON body, for headers beyond `limit` bytes."""
    return raw_error_response(ApiError(431, "headers_too_large", f"the request's headers exceed {limit} bytes"))


class AnsweringIOStream(iostream.IOStream):
    """An IOStream that answers 431 when it closes because the headers outgrew their limit."""

    def close(self, exc_info: Any = False) -> None:
        # `_read_regex` is set only while read_until_regex runs: HTTP/1's header read (tests/web pin it).
        if isinstance(exc_info, iostream.UnsatisfiableReadError) and self._read_regex is not None and not self.closed():
            Lingerer.start(self.socket, answer(self._read_max_bytes), self.io_loop)
        super().close(exc_info)


class Lingerer:
    """Sends an answer on a duplicate of a socket, then reads and drops what arrives until EOF, a budget or a deadline."""

    def __init__(self, sock: socket.socket, io_loop: IOLoop) -> None:
        self.sock, self.io_loop = sock, io_loop
        self.left = DISCARD_CAP
        io_loop.add_handler(sock.fileno(), self._readable, IOLoop.READ)
        self._deadline = io_loop.call_later(LINGER_S, self.close)

    @classmethod
    def start(cls, original: socket.socket, response: bytes, io_loop: IOLoop) -> None:
        """Answer on a duplicate of `original` (which its stream closes) and linger; best effort, never raises."""
        try:
            sock = original.dup()
        except OSError:
            return  # out of descriptors: closed unanswered, as before
        try:
            sock.send(response)  # a fresh connection's send buffer takes it whole
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        cls(sock, io_loop)

    def _readable(self, fd: int, events: int) -> None:
        try:
            data = self.sock.recv(READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self.left -= len(data)
        if not data or self.left <= 0:
            self.close()

    def close(self) -> None:
        """Stop lingering (idempotent)."""
        if self.sock.fileno() < 0:
            return
        self.io_loop.remove_timeout(self._deadline)
        self.io_loop.remove_handler(self.sock.fileno())
        self.sock.close()
