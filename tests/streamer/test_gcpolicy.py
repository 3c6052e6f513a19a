"""When the streamer freezes its heap again or collects all of it once (streamer/gcpolicy.py), and that it does."""

from __future__ import annotations

import gc

import pytest

from streamer.gcpolicy import Action, FreezePolicy
from streamer.runtime import Refreezer
from streamer.stream import StreamHandler
from tests.streamer.conftest import World
from tests.streamer.test_stream import open_stream

N, F, X = Action.NOTHING, Action.FREEZE, Action.FULL


def policy() -> FreezePolicy:
    return FreezePolicy(quiet_s=1.0, burst=1000, min_interval_s=5.0, min_new=10, full_min_closes=100, full_interval_s=60.0)


# Each row: ticks of (now, opened, closed, open now), and the actions expected at them.
@pytest.mark.parametrize(
    ("ticks", "expected"),
    [
        # start-up's freeze counts: nothing before min_interval_s, then the settled burst is frozen once
        ([(1, 50, 0, 50), (4, 50, 0, 50), (6, 50, 0, 50), (12, 50, 0, 50)], [N, N, F, N]),
        # not settled: connects keep coming (the count changed at this tick), then a quiet second
        ([(6, 50, 0, 50), (6.5, 60, 0, 60), (7.4, 60, 0, 60), (7.6, 60, 0, 60)], [N, N, N, F]),
        # too few new streams to be worth it, settled or not
        ([(6, 9, 0, 9), (20, 9, 0, 9)], [N, N]),
        # a stream of connects that never settles: frozen every `burst` streams, however soon after the last freeze
        ([(6, 1000, 0, 1000), (6.25, 2500, 0, 2500), (6.5, 3000, 0, 3000), (6.75, 3600, 0, 3600)], [F, F, N, F]),
        # a burst right after start-up is frozen too (the interval is for settled heaps)
        ([(0.5, 400, 0, 400), (1, 1200, 0, 1200), (1.25, 1300, 0, 1300), (3, 1300, 0, 1300)], [N, F, N, N]),
        # closes alone (a settled heap that only shrank) are nothing to freeze
        ([(6, 0, 0, 0), (6, 50, 50, 0), (8, 50, 50, 0)], [N, N, F]),
        # the streams turned over (closes ≥ full_min_closes and ≥ those open at the last full): one full collection,
        # once settled and full_interval_s after start-up
        ([(60, 500, 0, 500), (61.5, 500, 0, 500), (70, 500, 120, 380), (72, 500, 120, 380)], [N, F, N, X]),
        # turned over, but too early since start-up: a freeze only; the full collection waits for its interval
        ([(9, 500, 400, 100), (10.5, 500, 400, 100), (62, 500, 400, 100), (130, 500, 400, 100)], [N, F, X, N]),
    ],
)
def test_the_policy_decides_by_settling_counts_and_intervals(ticks: list[tuple[float, int, int, int]], expected: list[Action]) -> None:
    p = policy()
    assert [p.tick(*tick) for tick in ticks] == expected
    assert p.freezes == expected.count(F) + expected.count(X)
    assert p.full_collections == expected.count(X)


def test_after_a_full_collection_the_next_needs_as_many_closes_as_streams_were_open() -> None:
    p = policy()
    assert p.tick(50, 1000, 200, 800) is F  # a burst
    assert p.tick(61, 1000, 200, 800) is X  # settled, turned over: 800 open at the full collection
    assert p.tick(200, 1000, 899, 101) is N
    assert p.tick(201.5, 1000, 899, 101) is N  # settled, but 699 closed since: fewer than the 800 then open
    assert p.tick(201, 1000, 1000, 0) is N  # 800 closed, but not settled (counts changed)
    assert p.tick(202.5, 1000, 1000, 0) is X


def test_the_refreezer_freezes_what_opened_since_start_up() -> None:
    counts = (0, 0, 0)
    refreezer = Refreezer(lambda: counts, FreezePolicy(min_interval_s=0.0, quiet_s=0.0, min_new=1))
    refreezer.policy.started = 0.0
    kept = [[n] for n in range(1000)]  # objects made "after start-up"
    try:
        assert refreezer.tick() is N  # nothing opened yet
        counts = (1, 0, 1)
        assert refreezer.tick() is F
        assert gc.get_freeze_count() >= len(kept)
        assert not any(k is kept[0] for k in gc.get_objects())  # out of every generation the GC scans
    finally:
        gc.unfreeze()


@pytest.mark.gen_test
async def test_an_opened_stream_leaves_no_request_objects_for_the_cyclic_gc(port: int, world: World) -> None:
    # With the collector off, a request's reference cycle would keep its handler alive until a collection.
    gc.disable()
    try:
        stream = await open_stream(port, world.users["u10"], 1)
        assert not [o for o in gc.get_objects() if isinstance(o, StreamHandler)]
        await stream.close()
    finally:
        gc.enable()
