"""Token buckets per key (a webhook token, a client address, a username), bounded in memory; `now` may be given."""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict

BURST_FACTOR = 5
MAX_RATE_KEYS = 10_000
# Longer than any address written out; what is not an address needs no more to be told apart.
MAX_ADDRESS_CHARS = 128


class RateLimiter:
    """A token bucket per key: `rate` per second, bursts of `burst` (default BURST_FACTOR × rate, at least 1).

    At most `max_keys` buckets are kept, the least recently seen dropped first
    (it starts again with a full bucket) and counted in `evicted`.
    """

    def __init__(self, rate: float, burst: float | None = None, max_keys: int = MAX_RATE_KEYS) -> None:
        self.rate = rate
        self.burst = max(1.0, rate * BURST_FACTOR if burst is None else burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.refused = 0
        self.evicted = 0

    def allow(self, key: str, now: float | None = None) -> bool:
        """Take one request from `key`'s bucket; False when it is empty."""
        return self.wait(key, now) == 0.0

    def wait(self, key: str, now: float | None = None) -> float:
        """Take one request from `key`'s bucket and return 0.0; when it is empty, the seconds until it is not."""
        now = time.monotonic() if now is None else now
        level, since = self._buckets.pop(key, (self.burst, now))
        level = min(self.burst, level + (now - since) * self.rate)
        allowed = level >= 1.0
        self._buckets[key] = (level - 1.0 if allowed else level, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
            self.evicted += 1
        if allowed:
            return 0.0
        self.refused += 1
        return (1.0 - level) / self.rate


def retry_after(wait: float) -> int:
    """A wait as the whole seconds of a Retry-After header (at least 1)."""
    return max(1, math.ceil(wait))


def address_key(address: str) -> str:
    """The key of a client address in a per-address limit: itself, or its /64 for IPv6 (an IPv4-mapped one is its IPv4).

    One client usually holds a whole /64, so counting each of its addresses apart would multiply its limit.
    """
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:MAX_ADDRESS_CHARS]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:  # a dual-stack socket's view of an IPv4 client
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
