"""The loop of a producer process: wake-ups in, work from the database, events out through the relay.

    PULL (bound) ─wake-up─▶ worker.on_message ─▶ worker.catch_up ─▶ commits ─▶ relay.offer
    DEALER (relay) ─answers─▶ relay.pump          every SWEEP_S: catch_up + relay.sweep

The order and position handlers are sequential state machines (a paper
exchange, a ledger) whose only I/O is blocking SQLAlchemy calls and ZeroMQ
sends, so they run a plain blocking loop over a poller rather than an event
loop: nothing here could run concurrently anyway. The relay's DEALER is one
more socket of the same poller, not a thread.

Delivery (DESIGN 7): the database holds every hand-off. Work to do is a row
(a signal or tick in the order inbox, a fill in `executions`), marked done in
the transaction that does it; the event that describes it is an outbox row of
that same transaction, sent by the relay until the broker confirms it. A
message on the PULL socket is only a wake-up (and for fills a fast path): the
worker catches up from the database at start, on every wake-up when it asks
to, and every SWEEP_S, so a lost wake-up costs at most that long and a SIGKILL
costs nothing: the next start does what was left. The process is the only
writer of its rows: a second one cannot bind the same PULL endpoint, and the
writer lock (writer_lock.py, checked every sweep) stops one with other endpoints.

A worker's own failures are its business (a poison row is recorded and
skipped); an exception reaching this loop is logged, at most once per
WARN_EVERY_S, and the work is retried at the next sweep: the database down is one
WARNING line with the driver's reason (an outage is not a bug: no traceback),
anything else an ERROR with its traceback; the
relay then reads the outbox again, as the step may have committed rows that it
never offered (a COMMIT whose answer was lost). On
SIGTERM/SIGINT the loop finishes the row in hand, gives the relay up to
DRAIN_GRACE_S to have its sent rows confirmed, and exits within the contract's 5 s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import zmq

from bus import peersock, security
from bus.quiet_log import QuietLog
from bus.roles import Domain
from producers.errors import RETRIED
from producers.relay import Relay
from producers.writer_lock import WriterLock
from store import health

log = logging.getLogger(__name__)
T = TypeVar("T")

SWEEP_S = 1.0
POLL_MAX_MS = 100  # how often stop() is noticed while idle
DRAIN_GRACE_S = 2.0
RECEIVE_BATCH = 1024
WARN_EVERY_S = 30.0
LINGER_MS = 1000


class Worker(Protocol):
    """What a producer does with wake-ups and with the rows waiting in the database."""

    def on_message(self, frames: list[bytes]) -> bool:
        """A message arrived on the PULL socket; True when the database must be read (`catch_up`)."""

    def catch_up(self, stopping: Callable[[], bool]) -> None:
        """Do every row waiting in the database, in order, until none is left or `stopping()`."""


def drain_rows(
    fetch: Callable[[], list[T]],
    handle: Callable[[T], None],
    fail: Callable[[T, Exception], None],
    stopping: Callable[[], bool],
    *,
    limit: int,
) -> None:
    """Handle fetched rows until none is left; a row that raises is `fail`ed, and the next one goes on.

    `fetch` returns at most `limit` rows: fewer means none is left (rows
    committed meanwhile come with their own wake-up), which saves a query per
    wake-up. A TRANSIENT error (or a worker's NotRestored) is not the row's fault:
    it propagates, and the row stays pending for the next sweep instead of being
    recorded as failed.
    """
    while not stopping():
        batch = fetch()
        if not batch:
            return
        for item in batch:
            if stopping():
                return
            try:
                handle(item)
            except RETRIED:
                raise
            except Exception as exc:
                fail(item, exc)
        if len(batch) < limit:
            return


class ProducerLoop:
    """Binds the PULL socket, polls it with the relay's socket and runs the worker until `stop()`."""

    def __init__(
        self,
        endpoint: str,
        worker: Worker,
        relay: Relay,
        *,
        context: zmq.Context[Any] | None = None,
        hwm: int = 100_000,
        sweep_s: float = SWEEP_S,
        writer: WriterLock | None = None,
    ) -> None:
        self._worker, self._relay, self._sweep_s = worker, relay, sweep_s
        self._writer = writer
        self.writer_lost = False  # another process took the writer lock: run() returned, its caller exits 1
        self._socket = peersock.make(context or zmq.Context.instance(), zmq.PULL, rcvhwm=hwm, linger=0)
        security.bind(self._socket, endpoint, Domain.WAKEUP)
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(relay.socket, zmq.POLLIN)
        self._stopping = False
        self._failures = QuietLog(log, logging.ERROR, WARN_EVERY_S)
        # Its own, so that an outage's lines never hold back a bug's traceback.
        self._unavailable = QuietLog(log, logging.WARNING, WARN_EVERY_S)
        self.messages = 0

    @property
    def failures(self) -> int:
        """Steps that raised so far."""
        return self._failures.count + self._unavailable.count

    @property
    def endpoint(self) -> str:
        """The bound endpoint, with the real port when `*` was asked for."""
        return str(self._socket.getsockopt(zmq.LAST_ENDPOINT).decode())

    def stop(self) -> None:
        """Ask `run()` to finish the row in hand and return; safe from a signal handler."""
        self._stopping = True

    def stopping(self) -> bool:
        return self._stopping

    def run(self) -> None:
        """Catch up, then serve until `stop()`; then let the relay drain and close."""
        next_sweep = 0.0  # the first turn sweeps: the start-up catch-up
        while not self._stopping:
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + self._sweep_s
                if self._writer is not None and not self._writer.still_held():
                    self.writer_lost = True
                    break
                self._guarded(self._sweep)
            ready = dict(self._poller.poll(self._timeout_ms(next_sweep)))
            if self._socket in ready:
                self._guarded(self._receive)
            self._guarded(self._relay.pump)
        self._drain_relay()
        self._socket.close()

    def _timeout_ms(self, next_sweep: float) -> int:
        due = next_sweep
        deadline = self._relay.deadline()
        if deadline is not None:
            due = min(due, deadline)
        return max(0, min(POLL_MAX_MS, int((due - time.monotonic()) * 1000) + 1))

    def _sweep(self) -> None:
        self._worker.catch_up(self.stopping)
        self._relay.sweep()

    def _receive(self) -> None:
        behind = False
        for _ in range(RECEIVE_BATCH):  # bounded, so that a flood cannot keep the loop from its sweep
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.messages += 1
            behind = self._worker.on_message(frames) or behind
        if behind:
            self._worker.catch_up(self.stopping)

    def _guarded(self, step: Callable[[], None]) -> None:
        # The loop's message boundary: a failure (the database unreachable) is retried, never fatal.
        try:
            step()
        except Exception as exc:
            # A COMMIT can fail after the database carried it out (its answer lost with the connection, a
            # real risk with PostgreSQL across a network): the relay reads what the worker could not offer.
            self._relay.recheck()
            if health.unavailable(exc):
                self._unavailable("producer step failed, the database is unavailable (%s); retrying at the next sweep",
                                  health.describe(exc))
            else:
                self._failures("producer step failed; retrying at the next sweep", exc_info=True)

    def _drain_relay(self) -> None:
        deadline = time.monotonic() + DRAIN_GRACE_S
        while not self._relay.idle and time.monotonic() < deadline:
            self._relay.socket.poll(POLL_MAX_MS, zmq.POLLIN)
            self._guarded(self._relay.pump)
        self._relay.close()
