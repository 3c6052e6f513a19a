"""The receiving side of a producer process: one PULL socket, one message at a time.

The order and position handlers are sequential state machines (a paper
exchange, a ledger) whose only I/O is blocking SQLAlchemy calls and ZeroMQ
sends, so they run a plain blocking loop over a poller rather than an event
loop: nothing here could run concurrently anyway, and no event loop is blocked.

Delivery across restarts (supervisord), one process at a time: the senders'
PUSH sockets queue what they cannot deliver while this process is down (up to
their high-water mark) and hand it over once it is back, so a restart loses no
command a live sender accepted. On SIGTERM/SIGINT the loop stops taking new
work, drains what already reached its socket (at most DRAIN_GRACE_S), then its
own queued sends get LINGER_MS: it exits within the contract's 5 s.

Not guaranteed: sends still queued after LINGER_MS because their peer is down
too at that moment; messages received but not yet handled when the process is
killed (SIGKILL, crash) or in flight on the wire at close. ZeroMQ has no
acknowledgements: a command is handled at most once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import zmq

from producers.commands import Command, decode

log = logging.getLogger(__name__)

POLL_MS = 100
DRAIN_GRACE_S = 2.0
DRAIN_QUIET_MS = 50
DRAIN_BATCH = 1024
LINGER_MS = 1000


class CommandLoop:
    """Binds a PULL socket and hands each decoded command to `handle` until `stop()`."""

    def __init__(
        self,
        endpoint: str,
        handle: Callable[[Command], None],
        *,
        context: zmq.Context[Any] | None = None,
        hwm: int = 100_000,
    ) -> None:
        self._handle = handle
        self._socket = (context or zmq.Context.instance()).socket(zmq.PULL)
        self._socket.setsockopt(zmq.RCVHWM, hwm)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(endpoint)
        self._stopping = False
        self.handled = 0
        self.skipped = 0

    @property
    def endpoint(self) -> str:
        """The bound endpoint, with the real port when `*` was asked for."""
        return str(self._socket.getsockopt(zmq.LAST_ENDPOINT).decode())

    def stop(self) -> None:
        """Ask `run()` to drain and return; safe from a signal handler."""
        self._stopping = True

    def run(self) -> None:
        """Handle commands until `stop()`, then drain what already arrived and close."""
        while not self._stopping:
            if self._socket.poll(POLL_MS, zmq.POLLIN):
                self._receive_available()
        deadline = time.monotonic() + DRAIN_GRACE_S
        while time.monotonic() < deadline and self._socket.poll(DRAIN_QUIET_MS, zmq.POLLIN):
            self._receive_available()
        self._socket.close()

    def _receive_available(self) -> None:
        # Bounded, so that a steady flood cannot keep the loop from seeing stop().
        for _ in range(DRAIN_BATCH):
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._handle_one(frames)

    def _handle_one(self, frames: list[bytes]) -> None:
        # The message boundary: one poison message is logged and skipped, never fatal.
        try:
            self._handle(decode(frames))
            self.handled += 1
        except Exception:
            self.skipped += 1
            log.exception("command skipped (%d frames, first %r)", len(frames), frames[0][:20] if frames else b"")
