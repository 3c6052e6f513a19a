"""Producer streams of the acknowledged ingress, with no sockets: which events to sequence.

A relay sends each outbox row as `(stream, event_id, prev_id)` plus its event
(CONTRACT section 2). Per stream the broker keeps one number, `last`:
every event of the stream up to it is handled (sequenced, or rejected as
malformed). A re-sent event is recognised by `event_id <= last` and never
sequenced twice; an event whose `prev_id` is not `last` follows a loss in
transit and is refused until the relay resends from `last`.

    unknown, prev_id == 0, valid                  SEQUENCE    known(last = event_id)
    unknown, prev_id == 0, malformed              REJECT      known(last = event_id)
    unknown, prev_id != 0                         UNKNOWN     (stays unknown; answered `unknown`)
    unknown, MAX_STREAMS known, event or hello    REFUSED     (stays unknown; no answer: the relay retries later)
    unknown, hello(acked)                         known(last = acked)         answered `ack acked`
    known(last), hello(acked), acked <= last      (stays; answered `ack cap`, cap above acked)
    known(last), hello(acked), acked > last       (stays; answered `resend last`)
    known(last), event_id <= last, rejected       REJECTED    (stays; answered `reject event_id` again, then `ack cap`)
    known(last), event_id <= last                 DUPLICATE   (stays; answered `ack cap`)
    known(last), prev_id == last, valid           SEQUENCE    last = event_id
    known(last), prev_id == last, malformed       REJECT      last = event_id
    known(last), prev_id != last                  RESEND      (stays; answered `resend cap`)

`cap` is `last`, or just below the first remembered rejection above the event
(above `prev_id` for a resend, above `acked` for a hello) when there is one. A relay SIGKILLed after it
received a `reject` and before it wrote it sends the row again after its restart:
the broker answers `reject` again rather than `ack`, and no cumulative answer
jumps over a rejection the relay may not have recorded (it would mark that row
sent without its reason). Rejections are remembered per stream, oldest forgotten
first beyond REJECTION_BYTES over all streams, and counted. With a journal they
are kept across restarts like the lasts: `take_rejection_changes` names what
the batch remembered and forgot (journaled in the batch's transaction, before
its answers), `restore_rejections` loads them back under the same bound.

A remembered rejection is *untold* until its `reject` was queued to the connection
the stream is heard on (`told`); the broker sends every untold rejection of a stream
before any other answer to it, in every batch that answers it, so a cumulative `ack`
never reaches a relay past a `reject` it missed, in that batch or a later one:

    rejected (REJECT), asked again (REJECTED), restored    untold
    `reject` queued to the connection the stream is heard on    told
    the stream heard on another connection (`heard`)    all its rejections untold
    forgotten beyond REJECTION_BYTES while untold    counted (`untold_forgotten`)

A connection not heard before for a stream (a relay restarted or reconnected: ROUTER
gives it a new identity; or any connection after a broker restart) has been told
nothing: answers queued to the old one may have died with it, unread. Restored
rejections are untold for the same reason: "told" is not journaled, since a `reject`
queued by a broker that died before libzmq wrote it out never arrived. Untold
rejections are a subset of the remembered ones and share their bound.

An unknown stream takes an event only at the stream's start (`prev_id` 0).
After that it cannot tell a loss in transit from its own amnesia (a broker
restarted without a journal, or one that forgot the stream): events a relay had
in flight when the broker died may never have arrived, and taking the next one
would acknowledge them too. So it answers `unknown`, and the relay says with
`hello` the last id it has confirmed; the stream is known from there, and the
relay sends again what follows.

A known stream is never forgotten while the broker runs (nor, with a journal,
across restarts): forgetting one made the next `hello acked`, with `acked`
behind the real `last` (acks lost in transit, marks not written yet), sequence
its events a second time. Known streams are bounded in number instead, far
above what producers make (two per outbox database): beyond MAX_STREAMS a new
stream is REFUSED, unanswered and counted, so a flood of names (producers are
authenticated; bus/roles.py) cannot push a live stream out.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from bus.protocol import MAX_REASON

MAX_STREAMS = 100_000  # about 20 MiB of names and numbers at most (64 characters a name)
# A rejection's reason is at most 200 characters (bus/protocol.py MAX_REASON): ~16,000 remembered.
REJECTION_BYTES = 4 << 20
REJECTION_OVERHEAD = 64  # bytes counted per remembered rejection besides its stream name and reason


class Verdict(enum.Enum):
    """What the broker does with one event of a producer stream."""

    SEQUENCE = "sequence"
    REJECT = "reject"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"  # a duplicate of a remembered rejection: answered `reject` again
    RESEND = "resend"
    UNKNOWN = "unknown"
    REFUSED = "refused"  # a new stream beyond MAX_STREAMS: no answer


class RejectionChanges(NamedTuple):
    """Rejections remembered `(stream, event_id, reason)` (oldest first) and forgotten `(stream, event_id)` since the last call."""

    remembered: list[tuple[str, int, str]]
    forgotten: list[tuple[str, int]]


class Decision(NamedTuple):
    """A verdict and the stream's `last` after it (what an ack or a resend carries)."""

    verdict: Verdict
    last: int


class ProducerStreams:
    """`last` of every known producer stream, bounded in number (new streams refused beyond it)."""

    def __init__(self, max_streams: int = MAX_STREAMS, rejection_bytes: int = REJECTION_BYTES) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        self.max_streams = max_streams
        self.rejection_bytes = rejection_bytes
        self._rejections: dict[str, dict[int, str]] = {}  # per stream, event ids ascending
        self._rejection_order: deque[tuple[str, int]] = deque()  # oldest first, over all streams
        self._rejection_bytes = 0
        self.rejections_forgotten = 0
        self._remembered: dict[tuple[str, int], str] = {}  # since take_rejection_changes, oldest first
        self._forgotten: set[tuple[str, int]] = set()
        self._untold: dict[str, set[int]] = {}  # per stream, remembered rejections its connection may not have
        self._heard_on: dict[str, bytes] = {}  # per stream with rejections: the connection it was last heard on
        self._untold_count = 0
        self.untold_forgotten = 0  # forgotten before their relay was told (it may mark the row sent, no reason)
        self._last: dict[str, int] = {}
        self._changed: dict[str, int] = {}
        self.refused = 0  # events and hellos of new streams beyond the bound

    def decide(self, stream: str, event_id: int, prev_id: int, valid: bool, reason: str = "") -> Decision:
        """The verdict on one event; SEQUENCE and REJECT move `last` to `event_id` at once.

        A REJECT is remembered with `reason`, so that a resend of it is REJECTED again.
        """
        last = self._last.get(stream)
        if last is not None:
            if event_id <= last:
                verdict = Verdict.DUPLICATE
                if self.rejection(stream, event_id) is not None:
                    verdict = Verdict.REJECTED  # the relay asks again: it may never have had the `reject`
                    self._untell(stream, event_id)
                return Decision(verdict, self._cap(stream, event_id, last))
            if prev_id != last:
                return Decision(Verdict.RESEND, self._cap(stream, prev_id, last))
        elif len(self._last) >= self.max_streams:
            self.refused += 1
            return Decision(Verdict.REFUSED, event_id)
        elif prev_id != 0:
            return Decision(Verdict.UNKNOWN, event_id)
        self._set(stream, event_id)
        if valid:
            return Decision(Verdict.SEQUENCE, event_id)
        reason = reason[:MAX_REASON]  # what the `reject` answer carries
        self._remembered[stream, event_id] = reason  # before `_remember`, which may forget it at once
        self._remember(stream, event_id, reason)
        return Decision(Verdict.REJECT, event_id)

    def rejection(self, stream: str, event_id: int) -> str | None:
        """The reason a remembered rejection was given, None when the event was not rejected (or is forgotten)."""
        rejected = self._rejections.get(stream)
        return None if rejected is None else rejected.get(event_id)

    def _cap(self, stream: str, after: int, last: int) -> int:
        """`last`, or below the first remembered rejection above `after`: answers never jump over one."""
        for event_id in self._rejections.get(stream, ()):
            if event_id > after:
                return min(last, event_id - 1)
        return last

    def _remember(self, stream: str, event_id: int, reason: str) -> None:
        self._rejections.setdefault(stream, {})[event_id] = reason
        self._untell(stream, event_id)
        self._rejection_order.append((stream, event_id))
        self._rejection_bytes += _rejection_cost(stream, reason)
        while self._rejection_bytes > self.rejection_bytes and self._rejection_order:
            oldest, oldest_id = self._rejection_order.popleft()
            rejected = self._rejections[oldest]
            self._rejection_bytes -= _rejection_cost(oldest, rejected.pop(oldest_id))
            if self._tell(oldest, oldest_id):
                self.untold_forgotten += 1
            if not rejected:
                del self._rejections[oldest]
                self._heard_on.pop(oldest, None)
            self.rejections_forgotten += 1
            if self._remembered.pop((oldest, oldest_id), None) is None:
                self._forgotten.add((oldest, oldest_id))  # journaled before (or restored): the journal deletes it

    def _untell(self, stream: str, event_id: int) -> None:
        untold = self._untold.setdefault(stream, set())
        if event_id not in untold:
            untold.add(event_id)
            self._untold_count += 1

    def _tell(self, stream: str, event_id: int) -> bool:
        """Drop (stream, event_id) from the untold; whether it was there."""
        untold = self._untold.get(stream)
        if untold is None or event_id not in untold:
            return False
        untold.discard(event_id)
        self._untold_count -= 1
        if not untold:
            del self._untold[stream]
        return True

    def heard(self, stream: str, connection: bytes) -> None:
        """A message of `stream` came from `connection` (its ROUTER identity): on one not heard before for
        the stream, every rejection of it is untold again (the old connection's answers may have died unread)."""
        rejected = self._rejections.get(stream)
        if rejected is None or self._heard_on.get(stream) == connection:
            return
        self._heard_on[stream] = connection
        self._untold_count += len(rejected) - len(self._untold.get(stream, ()))
        self._untold[stream] = set(rejected)

    def untold(self, stream: str) -> list[int]:
        """The stream's rejections whose `reject` is not known to be queued to its connection, ascending."""
        return sorted(self._untold.get(stream, ()))

    def told(self, stream: str, event_id: int, connection: bytes) -> None:
        """The `reject` of (stream, event_id) was queued to `connection`: told, if the stream is heard there."""
        if self._heard_on.get(stream) == connection:
            self._tell(stream, event_id)

    @property
    def untold_count(self) -> int:
        """How many remembered rejections are untold (a stats gauge)."""
        return self._untold_count

    def restore_rejections(self, rejections: Iterable[tuple[str, int, str]]) -> None:
        """Load `(stream, event_id, reason)` (a journal's, oldest first) under the byte bound: the oldest beyond it
        are forgotten, as in memory, and named by the next `take_rejection_changes` (the journal deletes them)."""
        for stream, event_id, reason in rejections:
            self._remember(stream, event_id, reason)

    def take_rejection_changes(self) -> RejectionChanges:
        """The rejections remembered and forgotten since the last call (for the journal, with the lasts)."""
        if not self._remembered and not self._forgotten:  # most batches (every PULL-only one): nothing to build
            return RejectionChanges([], [])
        remembered = [(stream, event_id, reason) for (stream, event_id), reason in self._remembered.items()]
        forgotten = sorted(self._forgotten)
        self._remembered, self._forgotten = {}, set()
        return RejectionChanges(remembered, forgotten)

    @property
    def rejections(self) -> int:
        """How many rejections are remembered."""
        return len(self._rejection_order)

    def hello(self, stream: str, acked: int) -> Decision:
        """A relay's `hello`: an unknown stream is known from `acked`; a known one keeps its `last`.

        DUPLICATE (answered `ack cap`: `last`, or below the first remembered rejection above
        `acked`, which the relay may not have heard of) when the broker has everything up to
        `acked`, RESEND (answered `resend last`) when it has less than the relay was told.
        """
        last = self._last.get(stream)
        if last is None and len(self._last) >= self.max_streams:
            self.refused += 1
            return Decision(Verdict.REFUSED, acked)
        if last is None:
            self._set(stream, acked)
            return Decision(Verdict.DUPLICATE, acked)
        if acked > last:
            return Decision(Verdict.RESEND, last)
        return Decision(Verdict.DUPLICATE, self._cap(stream, acked, last))

    def last(self, stream: str) -> int | None:
        """The stream's `last`, None when it is unknown."""
        return self._last.get(stream)

    def restore(self, streams: Iterable[tuple[str, int]]) -> None:
        """Load `(stream, last)` pairs (a journal's): all of them, even beyond the bound, since none may be forgotten."""
        self._last.update(streams)

    def take_changes(self) -> dict[str, int]:
        """The streams whose `last` changed since the last call, with it (for the journal)."""
        changed, self._changed = self._changed, {}
        return changed

    def __len__(self) -> int:
        return len(self._last)

    def _set(self, stream: str, last: int) -> None:
        self._last[stream] = last
        self._changed[stream] = last


def _rejection_cost(stream: str, reason: str) -> int:
    return REJECTION_OVERHEAD + len(stream) + len(reason)
