"""This streamer's stream counts to its peers and theirs to it, over the bus (the core: streamer/admission.py).

Changes go out FLUSH_DELAY_S after the first of them (so a burst of connects is
one message, and the race window stays a millisecond), and every count is
repeated each FULL_EVERY_S (so that a lost message, a restarted broker or a new
peer is corrected within a second, and silence means a crash). Messages carry
at most MAX_COUNTS users each. They go through a PUSH socket of their own that
never blocks the loop: while the broker is down they are dropped and counted,
since the repeat makes them stale anyway. On a clean stop a `leaving` message
makes the peers forget this streamer at once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable

import zmq

from bus.errors import BusError
from bus.events import MAX_COUNTS, StreamCountsMessage
from bus.publisher import Publisher
from streamer.admission import Admission, Pairs

FLUSH_DELAY_S = 0.001
FULL_EVERY_S = 1.0
QUEUE_MESSAGES = 1000  # the PUSH high-water mark: a second of repeats for a million users
LEAVING_LINGER_MS = 500


def streamer_id() -> str:
    """A streamer's id, unique in a deployment; ids sort by start time, so an older streamer ranks first."""
    return f"{time.time_ns():020d}-{socket.gethostname()[:64]}-{os.getpid()}"


class PeerCounts:
    """Announces the admission's counts and hands it the peers'; `shed(user, n)` closes n newest streams."""

    def __init__(self, admission: Admission, ingress: str, shed: Callable[[int, int], int], context: zmq.Context[zmq.Socket[bytes]] | None = None) -> None:
        self.admission = admission
        self.shed = shed
        self.publisher = Publisher(ingress, context=context, hwm=QUEUE_MESSAGES, send_timeout_ms=0, linger_ms=LEAVING_LINGER_MS)
        self.unsent = 0  # messages dropped while the bus did not take them
        self._flush: asyncio.TimerHandle | None = None
        self._repeat: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        admission.on_change = self._changed

    def start(self) -> None:
        """Repeat every count each FULL_EVERY_S from now on (on the running loop)."""
        self._loop = asyncio.get_running_loop()
        self._repeat_all()

    def on_message(self, message: StreamCountsMessage) -> None:
        """A peer's counts (this streamer's own come back too, and are skipped)."""
        if message.streamer == self.admission.me:
            return
        if message.leaving:
            self.admission.forget_peer(message.streamer)
            return
        for user_id, excess in self.admission.heard(message.streamer, message.counts, time.monotonic()):
            self.shed(user_id, excess)

    def stop(self) -> None:
        """Tell the peers this streamer leaves (before its streams close: they reconnect elsewhere); close the socket."""
        if self._loop is None:
            return
        self._loop = None
        for handle in (self._flush, self._repeat):
            if handle is not None:
                handle.cancel()
        self._send([], leaving=True)
        self.publisher.close()  # queued messages get LEAVING_LINGER_MS

    def _changed(self) -> None:
        if self._flush is None and self._loop is not None:
            self._flush = self._loop.call_later(FLUSH_DELAY_S, self._send_changes)

    def _send_changes(self) -> None:
        self._flush = None
        self._send(self.admission.changes())

    def _repeat_all(self) -> None:
        assert self._loop is not None
        self.admission.expire(time.monotonic())
        self._send(self.admission.full())
        self._repeat = self._loop.call_later(FULL_EVERY_S, self._repeat_all)

    def _send(self, pairs: Pairs, leaving: bool = False) -> None:
        chunks = [pairs[i:i + MAX_COUNTS] for i in range(0, len(pairs), MAX_COUNTS)] or ([[]] if leaving else [])
        for chunk in chunks:
            try:
                self.publisher.publish(StreamCountsMessage(self.admission.me, tuple(chunk), leaving))
            except BusError:
                self.unsent += 1
