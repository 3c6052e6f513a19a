"""When the streamer freezes its heap again, and when it pays a full collection (issue 13): a pure core.

`gc.freeze()` after start-up takes start-up's objects out of the cyclic GC's
sight, but the streams opened later are made after it: their objects (~14 per
stream, docs/benchmarks.md) reach the oldest generation, and CPython scans all
of them in a full collection each time that generation has grown by a quarter:
45-90 ms at 10,000 streams, a pause every event arriving meanwhile waits for.

So once a burst of connections has settled (no stream opened or closed for
`quiet_s`), at most once per `min_interval_s`, the streamer freezes the heap
again (`gc.collect(1)`, then `gc.freeze()`: the young generations' garbage goes
first; a freeze itself is a list splice, O(1)); and while connects keep coming,
every `burst` new streams however soon. During a burst CPython collects its
oldest generation every tenth middle collection: after a freeze the unfrozen
rest it compares its growth with is small (a full collection sets
`long_lived_total` to what it found unfrozen), so every full collection scans
all the streams opened since the last freeze. Limited to one freeze per 5 s,
10,000 connects paid 11 full collections of 9-27 ms (189 ms, 7% of the burst's
CPU); freezing every 512 streams keeps each scan to about that many
streams' objects (docs/benchmarks.md, issue 13, third pass).

What it costs: cyclic garbage among frozen objects is not collected until the
heap is unfrozen. A stream leaves none (its request's cycle is broken in
streamer/handlers.py, a closed stream is freed by reference counting:
measured, docs/benchmarks.md), so this is a bound on what an unforeseen cycle
can keep: once the streams closed since the last full collection outnumber
both `full_min_closes` and the streams then open (the population turned over),
the next settled moment, at most once per `full_interval_s`, unfreezes,
collects everything once, and freezes again.

    tick(now, opened, closed, open_now) -> NOTHING | FREEZE | FULL
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Action(Enum):
    """What the streamer does with its GC now."""

    NOTHING = "nothing"
    FREEZE = "freeze"  # gc.collect(1); gc.freeze()
    FULL = "full"  # gc.unfreeze(); gc.collect(); gc.freeze()


QUIET_S = 1.0
BURST = 512
MIN_INTERVAL_S = 5.0
MIN_NEW = 64
FULL_MIN_CLOSES = 10_000
FULL_INTERVAL_S = 600.0
TICK_S = 0.25


@dataclass(slots=True)
class FreezePolicy:
    """Counts of streams opened and closed, sampled at each tick, against the last freeze and full collection."""

    quiet_s: float = QUIET_S
    burst: int = BURST
    min_interval_s: float = MIN_INTERVAL_S
    min_new: int = MIN_NEW
    full_min_closes: int = FULL_MIN_CLOSES
    full_interval_s: float = FULL_INTERVAL_S
    started: float = 0.0  # start-up's freeze (streamer/runtime.py) counts as the first of both
    freezes: int = 0
    full_collections: int = 0
    _seen: tuple[int, int] = (0, 0)
    _changed_at: float | None = None
    _frozen_at: float | None = None
    _opened_at_freeze: int = 0
    _full_at: float | None = None
    _closed_at_full: int = 0
    _open_at_full: int = 0

    def tick(self, now: float, opened: int, closed: int, open_now: int) -> Action:
        """The action for now, given the streams opened and closed so far and those open now."""
        if (opened, closed) != self._seen:
            self._seen, self._changed_at = (opened, closed), now
        frozen_at = self.started if self._frozen_at is None else self._frozen_at
        full_at = self.started if self._full_at is None else self._full_at
        settled = self._changed_at is None or now - self._changed_at >= self.quiet_s
        spaced = now - frozen_at >= self.min_interval_s
        turned_over = closed - self._closed_at_full >= max(self.full_min_closes, self._open_at_full)
        if spaced and settled and turned_over and now - full_at >= self.full_interval_s:
            self.full_collections += 1
            self._full_at, self._closed_at_full, self._open_at_full = now, closed, open_now
            return self._freeze(now, opened, Action.FULL)
        new = opened - self._opened_at_freeze
        # A burst is frozen every `burst` streams however soon: its own count bounds how often.
        if new >= self.burst or (spaced and settled and new >= self.min_new):
            return self._freeze(now, opened, Action.FREEZE)
        return Action.NOTHING

    def _freeze(self, now: float, opened: int, action: Action) -> Action:
        self.freezes += 1
        self._frozen_at, self._opened_at_freeze = now, opened
        return action
