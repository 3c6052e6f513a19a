"""The keys a Subscriber reads: readers counted per key, each key's topic, sync state and readiness.

No socket here: `Subscriber` (bus/subscriber.py) subscribes the SUB socket to the
topic `acquire()` returns (a key's first reader) and unsubscribes it from the one
`release()` returns (its last), and finds the key of each arriving frame by its
topic (`by_topic`, read on the hot path).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

from bus.keysync import KeySync, SyncCounters
from bus.topics import StreamKey, key_topic


@dataclass(slots=True)
class Subscription:
    """A subscribed key: its readers, its sync state and the future its first marker resolves."""

    key: StreamKey
    sync: KeySync
    ready: asyncio.Future[None]
    refs: int = 0


class Subscriptions:
    """Subscribed keys by key and by topic, kept together."""

    def __init__(self, stats: SyncCounters) -> None:
        self._stats = stats  # what each key's KeySync counts into
        self._by_key: dict[StreamKey, Subscription] = {}
        self.by_topic: dict[bytes, Subscription] = {}

    def acquire(self, key: StreamKey) -> tuple[Subscription, bytes | None]:
        """Count one more reader of `key`; with the topic to subscribe to when it is the first."""
        sub = self._by_key.get(key)
        topic = None
        if sub is None:
            topic = key_topic(key)
            sub = Subscription(key, KeySync(self._stats), asyncio.get_running_loop().create_future())
            self._by_key[key] = self.by_topic[topic] = sub
        sub.refs += 1
        return sub, topic

    def release(self, key: StreamKey) -> bytes | None:
        """Count one reader less of `key`; the topic to unsubscribe from when it was the last."""
        sub = self._by_key.get(key)
        if sub is None:
            return None
        sub.refs -= 1
        if sub.refs > 0:
            return None
        del self._by_key[key]
        topic = key_topic(key)
        del self.by_topic[topic]
        return topic

    def get(self, key: StreamKey) -> Subscription | None:
        return self._by_key.get(key)

    def __contains__(self, key: StreamKey) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Subscription]:
        return iter(self._by_key.values())

    def topics(self) -> list[bytes]:
        """The topics of every subscribed key."""
        return list(self.by_topic)
