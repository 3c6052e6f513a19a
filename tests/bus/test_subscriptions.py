"""Subscriptions as a table: readers counted per key, a topic to subscribe at the first, to leave at the last."""

from __future__ import annotations

import asyncio

import pytest

from bus.subscriptions import Subscriptions
from bus.topics import StreamKey, key_topic
from tests.bus.test_keysync import Counters

A, B = StreamKey(1, 2), StreamKey(3, 4)


# A script of ("acquire" | "release", key) and what each call answered: the topic it names, or None.
SCRIPTS = {
    "first reader subscribes, second does not": [("acquire", A, A), ("acquire", A, None)],
    "last reader leaves the topic": [("acquire", A, A), ("acquire", A, None), ("release", A, None), ("release", A, A)],
    "an unknown key's release names nothing": [("release", A, None), ("acquire", B, B), ("release", A, None)],
    "a key left and taken again subscribes again": [("acquire", A, A), ("release", A, A), ("acquire", A, A)],
    "two keys counted apart": [("acquire", A, A), ("acquire", B, B), ("release", A, A), ("release", B, B)],
}


@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS.keys())
def test_topics_to_subscribe_and_leave_follow_the_count_of_readers(script: list[tuple[str, StreamKey, StreamKey | None]]) -> None:
    async def run() -> None:
        subs = Subscriptions(Counters())
        for call, key, named in script:
            topic = subs.acquire(key)[1] if call == "acquire" else subs.release(key)
            assert topic == (None if named is None else key_topic(named)), (call, key)
            held = {sub.key for sub in subs}
            assert {sub.key for sub in subs.by_topic.values()} == held  # by key and by topic kept together
            assert sorted(subs.topics()) == sorted(key_topic(k) for k in held)

    asyncio.run(run())


def test_a_keys_readers_share_one_sync_state_and_one_readiness() -> None:
    async def run() -> None:
        subs = Subscriptions(Counters())
        first, _ = subs.acquire(A)
        second, _ = subs.acquire(A)
        assert first is second and subs.by_topic[key_topic(A)] is first and first.refs == 2
        assert A in subs and len(subs) == 1 and B not in subs

    asyncio.run(run())
