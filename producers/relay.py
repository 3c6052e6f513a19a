"""The outbox relay of one producer: its rows to the broker's acknowledged ingress until confirmed.

    handler commit ─▶ offer(rows) ─▶ RelayWindow ─▶ DEALER [pub, [stream, id, prev_id], topic, payload] ─▶ broker
    broker ─▶ [ack | resend, [stream, last]] · [reject, [stream, id], reason] ─▶ window ─▶ outbox marks (one commit)
              (a reject at or below the last confirmed is one heard before: written again, not counted again)
    broker ─▶ [unknown, [stream, id]] ─▶ DEALER [hello, [stream, acked]], then the rows after acked again
    start ─▶ DEALER [hello, [stream, acked]] ─▶ the broker's answer ─▶ rows (or, past this database: a new stream)

The wire is CONTRACT section 2's (docs/contract.md; its words and frames in
bus/protocol.py); the decisions are RelayWindow's (pure).
This is wiring: a DEALER socket the producer's poll loop (pull_loop.py) watches,
and the database reads and marks of outbox.py. Rows the window cannot hold
stay in the database and are read back when it has room, so a burst or a long
broker outage costs no memory. ZMQ_IMMEDIATE keeps sends from queueing on a
connection that is not up: while the broker is down a send is refused at once,
and the window's deadline retries it.

A database restored from a backup (or copied) holds the stream name of its
original, behind what the broker sequenced of it: the broker would take its
next rows, whose ids come again, for duplicates and drop them. So a relay says
`hello` first and waits for the answer; one that confirms an event this
database never held (RelayWindow.beyond) moves the outbox to a new stream
name, logged as an error, and sends everything after its last confirmed row
there: nothing committed is lost, though rows the original had sent after the
backup reach the stream a second time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import zmq
from sqlalchemy.orm import Session, sessionmaker

from bus import peersock, protocol, security
from bus.errors import DecodeError
from bus.quiet_log import QuietLog
from producers import outbox
from producers.relay_window import RelayWindow, Row, WindowLimits

log = logging.getLogger(__name__)

RECEIVE_BATCH = 1024
PRUNE_S = 10.0
PRUNE_ROUNDS = 10  # up to 10 x PRUNE_BATCH rows per PRUNE_S: far above what a producer writes
WARN_EVERY_S = 30.0
# Confirmations are written at most this often: a mark per ack was one more commit (an fsync on SQLite)
# per event, +5 ms on the webhook → browser p50 (scripts/durability_probe.py). A mark not written yet
# costs only a resend after a crash, which the broker drops.
MARK_EVERY_S = 0.25
# A write of the marks or a read of the outbox that failed (the database down) is tried again this much
# later, not at once. The mark's deadline stayed in the past, so the producer's poll loop never waited and
# wrote again some 600 times a second, a core busy while the database was down; the read then came at
# every turn of that loop (POLL_MAX_MS, 10 a second) instead of at its sweep, as the loop's log line says
# (tests/faults/test_database_crash.py: 18,865 failed steps in 30 s, then 348, now 90: the sweep's three).
DATABASE_RETRY_S = 1.0


class Relay:
    """Sends one source's outbox rows, pipelined, and marks what the broker confirmed."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        source: str,
        endpoint: str,
        *,
        context: zmq.Context[Any] | None = None,
        limits: WindowLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source, self.endpoint = source, endpoint
        self._sessions, self._clock = sessions, clock
        self.stream = outbox.stream_name(sessions, source)
        self._retired: set[str] = set()  # streams this database left: their late answers are not malformed
        acked, highest = self._position()
        self.window = RelayWindow(acked, limits, highest=highest, greet=True)
        # linger 0: unconfirmed rows are in the database, nothing to linger for.
        self.socket = peersock.make(context or zmq.Context.instance(), zmq.DEALER, sndhwm=self.window.limits.window, linger=0)
        self.socket.setsockopt(zmq.IMMEDIATE, 1)
        security.connect(self.socket, endpoint)
        self._malformed = QuietLog(log, logging.WARNING, WARN_EVERY_S, clock)
        self._heard_again = QuietLog(log, logging.INFO, WARN_EVERY_S, clock)
        self.pruned = 0
        self._next_prune = clock() + PRUNE_S
        self._mark: int | None = None  # confirmed, not written to the outbox yet
        self._failed: list[tuple[int, str]] = []  # rejected, not written yet (kept until a commit takes them)
        self._marked = self.window.acked  # written: every row up to it is marked sent
        self._next_mark = 0.0
        self._next_load = 0.0  # a read of the outbox is due from then (later after one that failed)
        self._load()  # the rows a previous run left unconfirmed, before the producer commits new ones

    @property
    def malformed(self) -> int:
        """Answers ignored: malformed, or for another stream."""
        return self._malformed.count

    @property
    def idle(self) -> bool:
        """Every committed row is confirmed."""
        return self.window.idle

    def deadline(self) -> float | None:
        """When the relay must act even if nothing arrives (a retry, a mark to write), on its clock."""
        deadlines = [d for d in (self.window.deadline, self._next_mark if self._mark or self._failed else None) if d is not None]
        return min(deadlines, default=None)

    def offer(self, rows: Iterable[Row]) -> None:
        """Rows the producer just committed: send them now if the window allows (no database work here)."""
        self.window.offer(rows)
        self._send(self._clock())

    def recheck(self) -> None:
        """A step of the producer failed, perhaps after its commit took place: the rows it wrote are read
        from the outbox (the next pump), since nobody offers them (RelayWindow.recheck)."""
        self.window.recheck()

    def pump(self) -> None:
        """Read the answers waiting, retry what timed out, load rows left in the database, send."""
        self.receive()
        now = self._clock()
        self.window.expire(now)
        self._load()
        self._send(now)

    def _position(self) -> tuple[int, int]:
        """The source's last confirmed event id and the highest it has, in the database."""
        with self._sessions() as session:
            return outbox.last_sent(session, self.source), outbox.last_id(session, self.source)

    def _leave_stream(self, event_id: int) -> None:
        """The broker confirmed `event_id`, which this database never held: go on on a new stream."""
        old, new = self.stream, outbox.new_stream_name(self.source)
        acked, highest = self._position()
        # Said before it is written: a process that dies right after has still told the operator why.
        log.error("relay %s: the broker has event %d of stream %s, beyond the last this database holds (%d): "
                  "the database is older than its stream (restored from a backup, or a copy); "
                  "its events after %d go on a new stream, %s", self.source, event_id, old, highest, acked, new)
        outbox.renew_stream(self._sessions, self.source, new)
        self._retired.add(old)
        self.stream = new
        self.window.restart(acked, highest)
        self._mark, self._failed, self._marked = None, [], acked
        self._load()

    def _load(self) -> None:
        """Read the rows the window has room for; after a read that failed, not before DATABASE_RETRY_S."""
        wanted = self.window.load_after()
        if wanted is None or self._clock() < self._next_load:
            return
        after, limit = wanted
        self._next_load = self._clock() + DATABASE_RETRY_S  # what a raise leaves
        with self._sessions() as session:
            self.window.loaded(outbox.rows_after(session, self.source, after, limit), limit)
        self._next_load = 0.0

    def sweep(self) -> None:
        """The slow periodic duties: pump, and every PRUNE_S delete what retention no longer keeps."""
        self.pump()
        if self._clock() >= self._next_prune:
            self._next_prune = self._clock() + PRUNE_S
            for _ in range(PRUNE_ROUNDS):  # each round one short transaction: writers wait at most that long
                with self._sessions() as session:
                    deleted = outbox.prune(session, self.source)
                    session.commit()
                self.pruned += deleted
                if deleted < outbox.PRUNE_BATCH:
                    break

    def receive(self) -> None:
        """Apply every answer already received; write the marks when MARK_EVERY_S has passed (a reject: now)."""
        rejected = len(self._failed)
        for _ in range(RECEIVE_BATCH):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            marked = self._answer(frames, self._failed)
            if marked is not None:
                self._mark = max(self._mark or 0, marked)
        due = (self._mark is not None or self._failed) and self._clock() >= self._next_mark
        if len(self._failed) > rejected or due:  # a new rejection is written at once
            self.write_marks()

    def write_marks(self) -> None:
        """Write what the broker confirmed (and rejected) to the outbox, in one transaction.

        When the database is down this raises and forgets nothing: the rejections and the
        confirmed mark wait for the next write, DATABASE_RETRY_S later.
        """
        self._next_mark = self._clock() + DATABASE_RETRY_S  # what a raise leaves: the retry's time
        with self._sessions() as session:
            for event_id, reason in self._failed:
                outbox.mark_failed(session, self.source, event_id, reason)
            if self._mark is not None:
                outbox.mark_sent(session, self.source, self._marked, self._mark)
            session.commit()
        self._failed = []
        if self._mark is not None:
            self._marked = max(self._marked, self._mark)
        self._mark, self._next_mark = None, self._clock() + MARK_EVERY_S

    def _answer(self, frames: list[bytes], failed: list[tuple[int, str]]) -> int | None:
        try:
            word, stream, event_id, reason = protocol.parse_answer(frames)
        except DecodeError as exc:
            self._malformed("relay %s: ignored %s", self.source, exc)
            return None
        if stream != self.stream:
            if stream not in self._retired:
                self._malformed("relay %s: ignored an answer for stream %r", self.source, stream[:70])
            return None
        if word != protocol.UNKNOWN and self.window.beyond(event_id):
            self._leave_stream(event_id)
            return None
        now = self._clock()
        if word == protocol.ACK:
            return self.window.ack(event_id, now)
        if word == protocol.RESEND:
            return self.window.resend(event_id, now)
        if word == protocol.UNKNOWN:
            # A broker that lost this stream (restarted without a journal): say where it restarts,
            # then send again from there (the hello goes out before the rows: one DEALER, in order).
            self._hello()
            self.window.unknown(now)
            return None
        failed.append((event_id, reason))  # written even when heard before: a row a broker let an ack pass gets its reason
        if event_id <= self.window.acked:
            # Confirmed already: the broker tells a new connection (a reconnect, its own restart) every
            # rejection it remembers of the stream, since the reject queued to the old one may have died.
            self._heard_again("relay %s: event %d of %s rejected again by the broker (confirmed before; reason written again)",
                              self.source, event_id, self.stream)
            return None
        log.error("event %d of %s rejected by the broker: %s", event_id, self.stream, reason[:200])
        return self.window.reject(event_id, now)

    def _hello(self) -> bool:
        try:
            self.socket.send_multipart(protocol.hello_message(self.stream, self.window.acked), zmq.NOBLOCK)
        except zmq.Again:  # no broker: the rows' timeout comes back here through the next `unknown`
            return False
        return True

    def _send(self, now: float) -> None:
        if self.window.greet_due(now):
            self.window.greeted(now, refused=not self._hello())
        taken = self.window.take(now)
        for index, (row, prev_id) in enumerate(taken):
            message = protocol.pub_message(self.stream, row.id, prev_id, row.topic, row.payload)
            try:
                self.socket.send_multipart(message, zmq.NOBLOCK)
            except zmq.Again:  # no broker connected, or its queue is full: the deadline retries
                self.window.unsent(len(taken) - index)
                return

    def close(self) -> None:
        """Write the last marks and close the socket (unconfirmed rows stay in the outbox for the next start)."""
        try:
            if self._mark is not None or self._failed:
                self.write_marks()
        finally:
            self.socket.close()
