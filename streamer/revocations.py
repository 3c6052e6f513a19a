"""What control messages said lately, for streams whose access check ran before one arrived.

A stream's access is read from the database (or a short cache) before it
opens; a `disconnect` or `cleanup_strategy` arriving between that read and
the stream's registration would otherwise miss it. Each revocation is kept for
MEMORY_S, oldest first: forgetting the expired ones, at each use, costs little.
The hub keeps those of keys and strategies; the authenticator keeps ended
sessions and users the same way (any hashable target).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import NamedTuple

from bus.topics import StreamKey

# Longer than any access check takes (a database read in an executor, or a cached answer of 5 s).
MEMORY_S = 120.0
Target = StreamKey | int  # a key, or every key of a strategy id


class Ending(NamedTuple):
    """Why a stream must end: a reason of bus.reasons and the message sent with it."""

    reason: str
    message: str


class Revocations:
    """Recent revocations by target, in the order they arrived."""

    def __init__(self, memory_s: float = MEMORY_S) -> None:
        self.memory_s = memory_s
        self._recent: dict[Hashable, tuple[float, Ending]] = {}  # insertion order = arrival order

    def remember(self, target: Hashable, ending: Ending, now: float) -> None:
        """Keep a revocation of `target` that arrived at `now` (monotonic seconds)."""
        self._recent.pop(target, None)  # re-inserted: it moves to the end
        self._recent[target] = (now, ending)
        self._forget_before(now - self.memory_s)

    def since(self, key: StreamKey, checked_at: float, now: float) -> Ending | None:
        """The revocation of `key` (or of its strategy) that arrived at or after `checked_at`, if any."""
        return self.since_any((key, key.strategy_id), checked_at, now)

    def since_any(self, targets: Iterable[Hashable], checked_at: float, now: float) -> Ending | None:
        """The first revocation of one of `targets` that arrived at or after `checked_at`, if any."""
        self._forget_before(now - self.memory_s)
        for target in targets:
            item = self._recent.get(target)
            if item is not None and item[0] >= checked_at:
                return item[1]
        return None

    def __len__(self) -> int:
        return len(self._recent)

    def _forget_before(self, horizon: float) -> None:
        recent = self._recent
        while recent:
            oldest = next(iter(recent))
            if recent[oldest][0] >= horizon:
                return
            del recent[oldest]
