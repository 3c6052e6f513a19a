"""The relay's state for one outbox stream (CONTRACT section 2, the relay's rules). Pure: no socket, no database.

    offer / loaded ─▶ rows after `acked`, in id order ─▶ take() ─▶ (row, prev_id) to send
    ack(last) · resend(last) · reject(id) · unknown() · expire(now) ◀─ the broker's answers and the clock

`acked` is the highest event id the broker confirmed: every row up to it is
sequenced (or rejected) and marked sent in the database. The rows after it are
held in id order, those before `_next` sent and awaiting an answer (at most
`window` of them), the rest not sent yet. Memory is bounded by `max_rows` and
`max_bytes`: rows offered beyond that stay in the database only (`spilled`), and
`complete` turns False until the wiring loads them back (`load_after`).
A rewind (resend, timeout) sends again from the first row after `acked`, with
prev_id = `acked`; the broker drops what it already sequenced.

A relay starts by greeting: it says `hello acked` and sends no row until the
broker answered it (`greet_due`, `greeted`; the first `ack` or `resend` ends
it). The answer names where the broker has the stream before anything of this
run reaches it, so `beyond(id)` can tell a database older than its stream: an
answer naming an id above `highest` (the highest this database ever gave the
stream, as read at start, or sent since) confirms events this
database never held. It was restored from a backup, or is a copy; the wiring
then moves the database to a new stream (the old one would take its next rows
for duplicates and drop them).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

GREET_RETRY_S = 0.01  # the first retry of a refused `hello`


@dataclass(frozen=True, slots=True)
class Row:
    """One outbox row as it is sent: its event id, topic and payload frames."""

    id: int
    topic: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class WindowLimits:
    """Bounds of one relay: unanswered sends, rows and bytes held, retry timing."""

    window: int = 1000
    max_rows: int = 20_000
    max_bytes: int = 8 << 20
    retry_s: float = 0.5
    max_retry_s: float = 4.0


@dataclass(slots=True)
class WindowStats:
    """What the relay did, for its stop line and tests."""

    sent: int = 0
    acked: int = 0
    rewinds: int = 0
    timeouts: int = 0
    rejected: int = 0
    spilled: int = 0


class RelayWindow:
    """Which outbox rows to send next, and what the broker's answers mean for them."""

    def __init__(self, acked: int, limits: WindowLimits | None = None, *, highest: int | None = None,
                 greet: bool = False) -> None:
        self.limits = limits or WindowLimits()
        self.stats = WindowStats()
        self._rows: deque[Row] = deque()
        self.restart(acked, highest or 0, greet=greet)

    @property
    def tail(self) -> int:
        """The highest event id held (or confirmed)."""
        return self._rows[-1].id if self._rows else self.acked

    @property
    def held(self) -> int:
        """Rows held in memory, sent or not, that the broker has not confirmed yet."""
        return len(self._rows)

    @property
    def in_flight(self) -> int:
        """Rows sent and not answered yet."""
        return self._next

    @property
    def idle(self) -> bool:
        """Nothing held and nothing left in the database: every row is confirmed."""
        return self.complete and not self._rows

    def restart(self, acked: int, highest: int, *, greet: bool = True) -> None:
        """Start (or start over on a new stream) from `acked`, holding nothing, greeting first; the stats go on."""
        self._rows.clear()
        self._bytes = self._next = 0
        self.acked, self._prev = acked, acked
        self.highest = max(acked, highest)  # no stream event of this database is above it
        self.greeting = greet  # no row goes out until the broker answered `hello`
        self.complete = False  # the database may hold unsent rows after acked: load them first
        self.deadline: float | None = None
        self._rewound_at: int | None = None
        self._retry, self._greet_retry = self.limits.retry_s, min(GREET_RETRY_S, self.limits.retry_s)

    def greet_due(self, now: float) -> bool:
        """Whether to say `hello acked` now: greeting, and not said within `retry_s`."""
        return self.greeting and (self.deadline is None or now >= self.deadline)

    def greeted(self, now: float, refused: bool = False) -> None:
        """`hello` was said: said again after `retry_s` unless answered. Refused (the connection is not up
        yet, as at every start): tried again soon, 10 ms and doubling up to `retry_s`."""
        if refused:
            self.deadline, self._greet_retry = now + self._greet_retry, min(self._greet_retry * 2, self.limits.retry_s)
        else:
            self.deadline = now + self.limits.retry_s

    def beyond(self, event_id: int) -> bool:
        """Whether an answer naming `event_id` confirms an event this database never gave the stream."""
        return event_id > self.highest

    def load_after(self) -> tuple[int, int] | None:
        """(after_id, limit) of the rows to read from the database, or None when none are needed."""
        room = self.limits.max_rows - len(self._rows)
        if self.complete or room < self.limits.max_rows // 2:
            return None
        return self.tail, min(room, self.limits.window)

    def loaded(self, rows: Iterable[Row], limit: int) -> None:
        """Rows read after `tail` (as `load_after` asked); fewer than `limit` means none are left."""
        count = 0
        for row in rows:
            if row.id <= self.tail:
                continue
            if not self._fits(row):
                self.complete = False  # the rest waits in the database for the next load
                return
            count += 1
            self._hold(row)
        self.complete = count < limit

    def offer(self, rows: Iterable[Row]) -> None:
        """Rows just committed by the producer; held if they fit, else left in the database."""
        for row in rows:
            if row.id <= self.tail:
                continue  # loaded from the database already
            if not self.complete or not self._fits(row):
                self.complete = False
                self.stats.spilled += 1
                continue
            self._hold(row)

    def recheck(self) -> None:
        """The producer may have committed rows it could not offer (a COMMIT carried out whose answer was
        lost): read the database after `tail` before holding any row offered later, which would pass them."""
        self.complete = False

    def take(self, now: float) -> list[tuple[Row, int]]:
        """The rows the window allows to send now, each with its prev_id; call `unsent` for any not sent."""
        if self.greeting:
            return []
        room = self.limits.window - self._next
        taken = []
        while room > 0 and self._next < len(self._rows):
            row = self._rows[self._next]
            taken.append((row, self._prev))
            self._prev = row.id
            self._next += 1
            room -= 1
        if taken:
            self.highest = max(self.highest, taken[-1][0].id)  # sent: an answer may confirm it
        if taken and self.deadline is None:
            self.deadline = now + self._retry
        self.stats.sent += len(taken)
        return taken

    def unsent(self, count: int) -> None:
        """The last `count` rows of `take()` could not be sent (the socket refused them)."""
        if count <= 0:
            return
        self._next -= count
        self.stats.sent -= count
        self._prev = self._rows[self._next - 1].id if self._next else self.acked

    def ack(self, last: int, now: float) -> int | None:
        """`ack last`: every row up to `last` is sequenced. The id to mark sent, None if nothing moved."""
        self._end_greeting()
        if last <= self.acked:
            return None
        while self._rows and self._rows[0].id <= last:
            self._bytes -= len(self._rows.popleft().payload)
            self._next = max(0, self._next - 1)
            self.stats.acked += 1
        self.acked = last
        self._prev = max(self._prev, last)
        self._rewound_at = None
        self._retry = self.limits.retry_s
        self.deadline = None if self._next == 0 else now + self._retry
        return last

    def resend(self, last: int, now: float) -> int | None:
        """`resend last`: the broker has everything up to `last` and nothing after; the id to mark sent."""
        self._end_greeting()
        if last < self.acked:
            # The broker lost events it had confirmed (a journal behind its acks): start over from `last`.
            self._rows.clear()
            self._bytes = 0
            self.acked, self.complete = last, False
            self._rewind(last, now)
            return None
        marked = self.ack(last, now)
        if self._rewound_at != last:  # one rewind per gap, however many in-flight rows report it
            self._rewind(last, now)
        return marked

    def unknown(self, now: float) -> None:
        """`unknown`: the broker lost the stream; the relay said `hello acked`, so send again after `acked`."""
        self._rewind(self.acked, now)

    def reject(self, event_id: int, now: float) -> int | None:
        """`reject event_id`: that row will never be sequenced and counts as handled."""
        self.stats.rejected += 1
        return self.ack(event_id, now)

    def expire(self, now: float) -> bool:
        """Past the deadline: send again from the first row after `acked`, retrying less often each time.

        With nothing in flight (the socket refused the sends: no broker) it only
        sets the next attempt, at the base interval: a refused send costs nothing,
        and a broker back from a restart gets the rows within `retry_s`.
        """
        if self.greeting or self.deadline is None or now < self.deadline:
            return False
        if self._next == 0:
            self.deadline = now + self.limits.retry_s if self._rows else None
            return False
        self._retry = min(self._retry * 2, self.limits.max_retry_s)
        self.stats.timeouts += 1
        self._rewind(self.acked, now)
        return True

    def _end_greeting(self) -> None:
        if self.greeting:
            self.greeting, self.deadline = False, None

    def _rewind(self, last: int, now: float) -> None:
        self._next, self._prev, self._rewound_at = 0, last, last
        self.deadline = now + self._retry if self._rows else None
        self.stats.rewinds += 1

    def _fits(self, row: Row) -> bool:
        return len(self._rows) < self.limits.max_rows and self._bytes + len(row.payload) <= self.limits.max_bytes

    def _hold(self, row: Row) -> None:
        self._rows.append(row)
        self._bytes += len(row.payload)
