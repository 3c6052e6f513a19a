"""Database answers shared and remembered briefly: one lookup for a burst of identical questions.

A thousand clients reconnecting with one token to the same strategies (after a
streamer restart, say) ask the same few questions at once. `TtlCache.get`
runs one lookup per key while others wait for its answer, and keeps the answer
for `ttl` seconds if `keep` says so. It also returns when that lookup began,
so a caller can tell whether a control message arrived after the answer was read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
MAX_ENTRIES = 10_000


class TtlCache(Generic[K, V]):
    """Coalesced lookups whose answers are kept for `ttl` seconds."""

    def __init__(self, ttl: float, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._answers: dict[K, tuple[float, float, V]] = {}  # key -> (expires, looked up at, value)
        self._inflight: dict[K, asyncio.Future[tuple[V, float]]] = {}

    async def get(self, key: K, lookup: Callable[[], Awaitable[V]], keep: Callable[[V], bool] = lambda _: True) -> tuple[V, float]:
        """The value for `key` and the monotonic time its lookup began."""
        now = time.monotonic()
        hit = self._answers.get(key)
        if hit is not None and hit[0] > now:
            return hit[2], hit[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[tuple[V, float]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await lookup()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked retrieved: nobody else need be waiting
            raise
        finally:
            del self._inflight[key]
        future.set_result((value, now))
        if keep(value):
            if len(self._answers) >= self.max_entries:
                self._answers.clear()
            self._answers[key] = (now + self.ttl, now, value)
        return value, now

    def forget(self, key: K) -> None:
        """Drop a kept answer (the next get looks it up again)."""
        self._answers.pop(key, None)

    def forget_where(self, doomed: Callable[[K], bool]) -> None:
        """Drop every kept answer whose key `doomed` picks."""
        for key in [key for key in self._answers if doomed(key)]:
            del self._answers[key]

    def forget_values(self, doomed: Callable[[V], bool]) -> None:
        """Drop every kept answer whose value `doomed` picks."""
        for key in [key for key, (_, _, value) in self._answers.items() if doomed(value)]:
            del self._answers[key]
