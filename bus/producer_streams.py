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
    unknown, hello(acked)                         known(last = acked)         answered `ack acked`
    known(last), hello(acked), acked <= last      (stays; answered `ack last`)
    known(last), hello(acked), acked > last       (stays; answered `resend last`)
    known(last), event_id <= last                 DUPLICATE   (stays; answered `ack last`)
    known(last), prev_id == last, valid           SEQUENCE    last = event_id
    known(last), prev_id == last, malformed       REJECT      last = event_id
    known(last), prev_id != last                  RESEND      (stays; answered `resend last`)

An unknown stream takes an event only at the stream's start (`prev_id` 0).
After that it cannot tell a loss in transit from its own amnesia (a broker
restarted without a journal, or one that forgot the stream): events a relay had
in flight when the broker died may never have arrived, and taking the next one
would acknowledge them too. So it answers `unknown`, and the relay says with
`hello` the last id it has confirmed; the stream is known from there, and the
relay sends again what follows. Known streams are bounded: the least recently
used is forgotten first, and counted.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

MAX_STREAMS = 10_000


class Verdict(enum.Enum):
    """What the broker does with one event of a producer stream."""

    SEQUENCE = "sequence"
    REJECT = "reject"
    DUPLICATE = "duplicate"
    RESEND = "resend"
    UNKNOWN = "unknown"


class Decision(NamedTuple):
    """A verdict and the stream's `last` after it (what an ack or a resend carries)."""

    verdict: Verdict
    last: int


class ProducerStreams:
    """`last` of every known producer stream, LRU-bounded in number."""

    def __init__(self, max_streams: int = MAX_STREAMS) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        self.max_streams = max_streams
        self._last: OrderedDict[str, int] = OrderedDict()
        self._changed: dict[str, int] = {}
        self._forgotten: set[str] = set()
        self.evicted = 0

    def decide(self, stream: str, event_id: int, prev_id: int, valid: bool) -> Decision:
        """The verdict on one event; SEQUENCE and REJECT move `last` to `event_id` at once."""
        last = self._last.get(stream)
        if last is not None:
            self._last.move_to_end(stream)
            if event_id <= last:
                return Decision(Verdict.DUPLICATE, last)
            if prev_id != last:
                return Decision(Verdict.RESEND, last)
        elif prev_id != 0:
            return Decision(Verdict.UNKNOWN, event_id)
        self._set(stream, event_id)
        return Decision(Verdict.SEQUENCE if valid else Verdict.REJECT, event_id)

    def hello(self, stream: str, acked: int) -> Decision:
        """A relay's `hello`: an unknown stream is known from `acked`; a known one keeps its `last`.

        DUPLICATE (answered `ack last`) when the broker has everything up to `acked`,
        RESEND (answered `resend last`) when it has less than the relay was told.
        """
        last = self._last.get(stream)
        if last is None:
            self._set(stream, acked)
            return Decision(Verdict.DUPLICATE, acked)
        self._last.move_to_end(stream)
        return Decision(Verdict.DUPLICATE if acked <= last else Verdict.RESEND, last)

    def last(self, stream: str) -> int | None:
        """The stream's `last`, None when it is unknown."""
        return self._last.get(stream)

    def restore(self, streams: Iterable[tuple[str, int]]) -> None:
        """Load `(stream, last)` pairs, least recently used first (as a journal returns them)."""
        for stream, last in streams:
            self._last[stream] = last
            self._last.move_to_end(stream)
            self._bound()  # a smaller bound than the journal's: the journal forgets them at its next write

    def take_changes(self) -> tuple[dict[str, int], set[str]]:
        """What changed since the last call: new `last`s and forgotten streams (for the journal)."""
        changed, forgotten = self._changed, self._forgotten
        self._changed, self._forgotten = {}, set()
        return changed, forgotten

    def __len__(self) -> int:
        return len(self._last)

    def _set(self, stream: str, last: int) -> None:
        self._last[stream] = last
        self._last.move_to_end(stream)
        self._changed[stream] = last
        self._forgotten.discard(stream)
        self._bound()

    def _bound(self) -> None:
        while len(self._last) > self.max_streams:
            oldest, _ = self._last.popitem(last=False)
            self._changed.pop(oldest, None)
            self._forgotten.add(oldest)
            self.evicted += 1
