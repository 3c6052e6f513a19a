"""The webhook's per-token rate limit: a token bucket per presented token, bounded in memory."""

from __future__ import annotations

import time
from collections import OrderedDict

BURST_FACTOR = 5
MAX_RATE_KEYS = 10_000


class RateLimiter:
    """A token bucket per key: `rate` per second, bursts of BURST_FACTOR × rate (at least 1).

    Keys are the tokens presented; at most `max_keys` buckets are kept, the
    least recently seen dropped first (it starts again with a full bucket).
    """

    def __init__(self, rate: float, max_keys: int = MAX_RATE_KEYS) -> None:
        self.rate = rate
        self.burst = max(1.0, rate * BURST_FACTOR)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.refused = 0

    def allow(self, key: str, now: float | None = None) -> bool:
        """Take one request from `key`'s bucket; False when it is empty."""
        now = time.monotonic() if now is None else now
        level, since = self._buckets.pop(key, (self.burst, now))
        level = min(self.burst, level + (now - since) * self.rate)
        allowed = level >= 1.0
        self._buckets[key] = (level - 1.0 if allowed else level, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        self.refused += not allowed
        return allowed
