"""web/ratelimit.py: token buckets as tables of (time, key) → wait."""

from __future__ import annotations

import pytest

from web.ratelimit import RateLimiter, retry_after

# (name, rate, burst, attempts as (time, key), the wait each gets: 0.0 taken, else seconds to the next token)
CASES = [
    ("a burst, then one per 1/rate", 0.5, 2, [(0.0, "a"), (0.0, "a"), (0.0, "a"), (1.0, "a"), (2.0, "a")], [0.0, 0.0, 2.0, 1.0, 0.0]),
    ("keys do not share", 1.0, 1, [(0.0, "a"), (0.0, "b"), (0.0, "a")], [0.0, 0.0, 1.0]),
    ("a refused attempt takes nothing", 1.0, 1, [(0.0, "a"), (0.5, "a"), (1.0, "a")], [0.0, 0.5, 0.0]),
    ("refill stops at the burst", 1.0, 2, [(0.0, "a"), (100.0, "a"), (100.0, "a"), (100.0, "a")], [0.0, 0.0, 0.0, 1.0]),
    ("10 per 300 s: the 11th waits 30 s", 10 / 300, 10, [(0.0, "u")] * 11, [0.0] * 10 + [pytest.approx(30.0)]),
]


@pytest.mark.parametrize(("rate", "burst", "attempts", "waits"), [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_a_bucket_gives_its_burst_then_refills_at_its_rate(
    rate: float, burst: float, attempts: list[tuple[float, str]], waits: list[float]
) -> None:
    limiter = RateLimiter(rate, burst=burst)
    assert [limiter.wait(key, now) for now, key in attempts] == waits
    assert limiter.refused == sum(1 for wait in waits if wait != 0.0)


def test_buckets_are_bounded_the_oldest_dropped_and_counted() -> None:
    limiter = RateLimiter(1.0, burst=1, max_keys=2)
    assert [limiter.allow(key, 0.0) for key in ("a", "b", "c")] == [True, True, True]
    assert limiter.evicted == 1
    assert limiter.allow("a", 0.0)  # forgotten: a full bucket again
    assert not limiter.allow("c", 0.0)


@pytest.mark.parametrize(("wait", "header"), [(0.01, 1), (1.0, 1), (1.2, 2), (29.9, 30)])
def test_retry_after_is_whole_seconds_rounded_up(wait: float, header: int) -> None:
    assert retry_after(wait) == header
