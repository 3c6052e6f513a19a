"""One SSE client: a detached socket, written directly, with a bounded backlog.

Once its response headers are decided, a stream no longer needs Tornado's
RequestHandler or IOStream: the hub writes the same bytes object to many
clients, and this small slotted object owns the socket. A write goes straight
to the kernel; only what the kernel does not take waits in `backlog`, counted
in frames. A client whose backlog would exceed its limit is closed on the spot
(a slow consumer): it costs the others nothing but this check.

The event loop watches the socket for reading (a peer that closes, or sends
junk that is discarded) and, while a backlog exists, for writing.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable

from bus.topics import StreamKey

log = logging.getLogger(__name__)

# The kernel's send buffer, fixed: autotuning would let megabytes pile up unseen
# behind a stalled reader before the frame bound below ever noticed.
SEND_BUFFER_BYTES = 64 * 1024
READ_CHUNK = 4096
# A peer that vanished without a FIN (laptop lid, dead NAT) stops acknowledging the
# heartbeats: the kernel then gives up after this long and the loop sees the error.
UNACKED_TIMEOUT_MS = 60_000
FINISH_TIMEOUT_S = 3.0


class Client:
    """A stream's socket, its frame-bounded backlog and its place in the hub."""

    __slots__ = (
        "_loop",
        "_on_close",
        "backlog",
        "backlog_frames",
        "close_reason",
        "closed",
        "fd",
        "finishing",
        "key",
        "limit",
        "opened",
        "peer",
        "session_id",
        "sock",
        "user_id",
    )

    def __init__(
        self,
        sock: socket.socket,
        key: StreamKey,
        limit: int,
        on_close: Callable[[Client], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.key = key
        self.user_id = key.user_id
        self.session_id: int | None = None  # the login session it was opened with (None: an API token)
        self.peer = _peer(sock)
        self.limit = limit
        self.backlog: deque[tuple[memoryview, int]] | None = None
        self.backlog_frames = 0
        self.closed = False
        self.finishing = False
        self.close_reason = ""
        self.opened = time.monotonic()
        self._loop = loop
        self._on_close = on_close
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, UNACKED_TIMEOUT_MS)
        loop.add_reader(self.fd, self._on_readable)

    def send(self, data: bytes, frames: int) -> None:
        """Write `data` (holding `frames` frames), or queue what the kernel does not take."""
        if self.backlog is not None:  # also where a finishing client's last frame waits
            if self.finishing:
                return  # nothing after the last frame
            if self.backlog_frames + frames > self.limit:
                self.abort("slow_consumer")
            else:
                self.backlog.append((memoryview(data), frames))
                self.backlog_frames += frames
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.abort("connection_lost")
            return
        if sent < len(data):
            # Count only what is still unsent: most of a multi-frame blob may be out already.
            pending = _frames_left(frames, len(data) - sent, len(data))
            self.backlog = deque(((memoryview(data)[sent:], pending),))
            self.backlog_frames = pending
            self._loop.add_writer(self.fd, self._on_writable)

    def finish(self, data: bytes, reason: str) -> None:
        """Write a last frame, then close once it is out (or after FINISH_TIMEOUT_S)."""
        if self.closed or self.finishing:
            return
        self.close_reason = reason
        self.send(data, 0)
        self.finishing = True
        if self.closed:
            return
        if self.backlog is None:
            self.abort(reason)
        else:
            self._loop.call_later(FINISH_TIMEOUT_S, self.abort, "finish_timeout")

    def abort(self, reason: str) -> None:
        """Close the socket now and tell the hub (once)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = self.close_reason or reason
        self._loop.remove_reader(self.fd)
        if self.backlog is not None:
            self._loop.remove_writer(self.fd)
            self.backlog = None
        self.sock.close()
        self._on_close(self)

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.abort("client_closed")

    def _on_writable(self) -> None:
        backlog = self.backlog
        assert backlog is not None
        while backlog:
            view, frames = backlog[0]
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                return
            except OSError:
                self.abort("connection_lost")
                return
            if sent < len(view):
                pending = _frames_left(frames, len(view) - sent, len(view))
                backlog[0] = (view[sent:], pending)
                self.backlog_frames -= frames - pending
                return
            backlog.popleft()
            self.backlog_frames -= frames
        self.backlog = None
        self._loop.remove_writer(self.fd)
        if self.finishing:
            self.abort(self.close_reason)


def _frames_left(frames: int, unsent: int, total: int) -> int:
    """The frames of a blob still unsent, by its bytes (a partly sent frame counts whole)."""
    return -(-frames * unsent // total)


def _peer(sock: socket.socket) -> str:
    try:
        host, port, *_ = sock.getpeername()
    except (OSError, ValueError):
        return "?"
    return f"{host}:{port}"
