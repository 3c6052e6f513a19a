"""Lookups asked at the same moment answered by one call (a DataLoader): one query for a burst of keys.

10,000 dashboards reconnecting over 5,000 strategies (after a streamer restart)
ask 5,000 different access questions within a second. One query each, four
database threads contending for the GIL with the event loop, took 12 s to
connect them all (docs/benchmarks.md). Here the first key asked starts a batch
of one; the keys asked while it runs wait together for the next batch, which is
one query, so batches grow exactly as fast as the database falls behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
MAX_BATCH = 500


class BatchLookup(Generic[K, V]):
    """`get(key)` answered by `lookup(keys)` over every key asked while the previous batch ran."""

    def __init__(self, lookup: Callable[[list[K]], Awaitable[Mapping[K, V]]], max_batch: int = MAX_BATCH) -> None:
        self.lookup = lookup
        self.max_batch = max_batch
        self.batches = 0
        self._waiting: dict[K, asyncio.Future[V]] = {}
        self._task: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V:
        """The answer for `key` (the lookup's exception if it failed; KeyError if it left `key` out)."""
        future = self._waiting.get(key)
        if future is None:
            future = self._waiting[key] = asyncio.get_running_loop().create_future()
            if self._task is None:
                self._task = asyncio.ensure_future(self._run())
        return await asyncio.shield(future)

    async def _run(self) -> None:
        try:
            while self._waiting:
                keys = list(self._waiting)[: self.max_batch]
                futures = [self._waiting.pop(key) for key in keys]
                self.batches += 1
                try:
                    answers = await self.lookup(keys)
                except Exception as exc:
                    for future in futures:
                        future.set_exception(exc)
                        future.exception()  # marked retrieved: every waiter may have gone
                    continue
                for key, future in zip(keys, futures):
                    if key in answers:
                        future.set_result(answers[key])
                    else:
                        future.set_exception(KeyError(key))
                        future.exception()
        finally:
            self._task = None
