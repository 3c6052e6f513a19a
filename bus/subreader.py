"""The subscriber's SUB socket, read from an event-loop reader callback on its edge-triggered ZMQ_FD.

A plain socket read from a reader callback: no future, no timer per wake-up
(zmq.asyncio's poll cost ~200 µs per lone event; this is the streamer's hot
path, 30.8 → 18.5 µs per delivery at 1,000 ev/s, docs/benchmarks.md). ZMQ_FD is
edge-triggered: any call on the socket may consume the edge, so after every
such call, and after a batch that may have left messages behind, `kick()`
schedules one more read.

With `coalesce_s` > 0 the reader coalesces its wake-ups (bus/coalesce.py): after
a read that returned messages it stops watching the FD and reads again after
`coalesce_s`; a read that finds nothing watches the FD again. Why no edge is
missed there: a read that finds nothing ends in libzmq's EAGAIN, which it returns
only after processing the socket's mailbox (the signal on ZMQ_FD consumed) and
finding the pipe empty (the pipe then marked asleep), so the next message makes
the I/O thread signal ZMQ_FD afresh, and the loop's epoll registration (level-
triggered, asyncio's and libuv's) reports an FD that is already readable when it
is added. Nothing touches the socket between that EAGAIN and the add; any other
call on it (subscribe, unsubscribe) still kicks. While resting, a read is always
due (the timer, or the next turn's read after a full batch), and it drains to
EAGAIN, so an edge consumed meanwhile is never needed. The watchdog's read_now()
stays the insurance it was.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import zmq

from bus import peersock, security
from bus.coalesce import STEPS, Fd, Found, Mode, Then
from bus.frames import recv_frames

log = logging.getLogger(__name__)

DRAIN_BATCH = 1024
# A batch ends at DRAIN_BATCH messages or once it holds DRAIN_BYTES, whichever comes first: 1,024
# events of 480 KB were 491 MB held at once, twice over when decoded (a streamer past 1 GB).
DRAIN_BYTES = 4 << 20
Batch = list[list[bytes]]


class SubReader:
    """One SUB socket at a time (it can be recreated), handing what it reads to `on_batch`."""

    def __init__(
        self, context: zmq.Context[Any], endpoint: str, hwm: int, on_batch: Callable[[Batch], None], coalesce_s: float = 0.0
    ) -> None:
        self.endpoint = endpoint
        self.hwm = hwm
        self.coalesce_s = coalesce_s  # 0: read on every edge
        self.last_heard = time.monotonic()
        self.read_ns = 0  # time.time_ns() when the batch being handled was read (streamer/timings.py)
        self._ctx = context
        self._on_batch = on_batch
        self._sub: zmq.Socket[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mode = Mode.WATCHING
        self._timer: asyncio.TimerHandle | None = None

    def open(self, loop: asyncio.AbstractEventLoop, topics: Iterable[bytes]) -> None:
        """Connect a new SUB socket subscribed to `topics` and start reading it."""
        sub = peersock.configure(zmq.Socket(self._ctx, zmq.SUB), rcvhwm=self.hwm, linger=0)
        security.connect(sub, self.endpoint)
        for topic in topics:
            sub.subscribe(topic)
        self._sub, self._loop, self._mode = sub, loop, Mode.WATCHING
        loop.add_reader(sub.fileno(), self.read)
        self.kick()

    def close(self) -> None:
        """Stop reading and close the socket (open() makes a new one)."""
        sub, self._sub = self._sub, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if sub is not None:
            assert self._loop is not None
            if self._mode is Mode.WATCHING:
                self._loop.remove_reader(sub.fileno())
            sub.close(linger=0)
        self._mode = Mode.WATCHING

    def reopen(self, topics: Iterable[bytes]) -> None:
        """A new socket with the same subscriptions (the watchdog's remedy for a silent broker)."""
        assert self._loop is not None, "open() first"
        self.close()
        self.open(self._loop, topics)
        self.last_heard = time.monotonic()

    @property
    def is_open(self) -> bool:
        return self._sub is not None

    @property
    def mode(self) -> Mode:
        """WATCHING the FD, or RESTING until a timer reads (bus/coalesce.py)."""
        return self._mode

    @property
    def fd(self) -> int | None:
        """The SUB's ZMQ_FD (readable once libzmq signals the socket), None while closed."""
        return None if self._sub is None else self._sub.fileno()

    def subscribe(self, topic: bytes) -> None:
        assert self._sub is not None, "open() first"
        self._sub.subscribe(topic)
        self.kick()

    def unsubscribe(self, topic: bytes) -> None:
        if self._sub is not None:
            self._sub.unsubscribe(topic)
            self.kick()

    def kick(self) -> None:
        """Read soon: the socket call just made may have consumed the FD's edge (resting: a read is due anyway)."""
        if self._loop is not None and self._mode is Mode.WATCHING:
            self._loop.call_soon(self.read)

    def read(self) -> None:
        """Read what waits on the socket, at most DRAIN_BATCH messages or DRAIN_BYTES per turn of the loop."""
        sub = self._sub
        if sub is None:
            return
        batch: Batch = []
        size = 0
        found = Found.FULL  # more may wait, and the edge-triggered FD will not say so again
        try:
            while len(batch) < DRAIN_BATCH and size < DRAIN_BYTES:
                frames = recv_frames(sub)
                batch.append(frames)
                size += sum(map(len, frames))
        except zmq.Again:
            found = Found.SOME if batch else Found.NOTHING
        if self.coalesce_s > 0.0 or self._mode is Mode.RESTING:
            self._step(sub, found)
        elif found is Found.FULL:  # off: the table's answer, without its lookup on every read of the default
            self.kick()
        if not batch:
            return
        self.last_heard = time.monotonic()
        self.read_ns = time.time_ns()
        try:
            self._on_batch(batch)
        except Exception:
            log.exception("batch of %d bus messages skipped", len(batch))

    def _step(self, sub: zmq.Socket[Any], found: Found) -> None:
        """Carry out bus/coalesce.py's step: watch the FD or not, and schedule the next read."""
        loop = self._loop
        assert loop is not None
        step = STEPS[self._mode, found, self.coalesce_s > 0]
        self._mode = step.mode
        if step.fd is Fd.UNWATCH:
            loop.remove_reader(sub.fileno())
        elif step.fd is Fd.WATCH:
            loop.add_reader(sub.fileno(), self.read)
        if step.then is Then.LATER:
            if self._timer is None:
                self._timer = loop.call_later(self.coalesce_s, self._rested)
        elif step.then is Then.SOON:
            loop.call_soon(self.read)
        elif self._timer is not None:  # watching again: a rest's timer is not needed
            self._timer.cancel()
            self._timer = None

    def _rested(self) -> None:
        self._timer = None
        self.read()
