"""The stage histograms' core: buckets, their bounds, percentiles of sparse counts, diffs between snapshots."""

from __future__ import annotations

import asyncio
import gc
from typing import NamedTuple

import pytest

from streamer.timings import BUCKETS, LogHistogram, Timings, bucket_of, diff_counts, lower_bound, quantiles_ms
from tests.waiting import async_wait_until


@pytest.mark.parametrize(
    ("micros", "bucket", "lower"),
    [(-5, 0, 0), (0, 0, 0), (1, 1, 1), (15, 15, 15), (16, 16, 16), (17, 16, 16), (18, 17, 18), (31, 23, 30),
     (32, 24, 32), (35, 24, 32), (36, 25, 36), (1000, 63, 960), (10**12, BUCKETS - 1, lower_bound(BUCKETS - 1))],
)
def test_a_value_falls_in_the_bucket_whose_lower_bound_is_at_most_it(micros: int, bucket: int, lower: int) -> None:
    assert bucket_of(micros) == bucket
    assert lower_bound(bucket) == lower


def test_buckets_are_contiguous_and_within_an_eighth_of_an_octave() -> None:
    for index in range(1, BUCKETS - 1):
        low, high = lower_bound(index), lower_bound(index + 1)
        assert bucket_of(low) == index
        assert bucket_of(high - 1) == index
        assert high - low <= max(1, low // 8)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({}, {"p50": None, "p99": None, "p999": None, "max": None}),
        ({1000: 1}, {"p50": 1.0, "p99": 1.0, "p999": 1.0, "max": 1.0}),
        ({100: 98, 2000: 1, 30000: 1}, {"p50": 0.1, "p99": 2.0, "p999": 30.0, "max": 30.0}),
        ({100: 999, 50000: 1}, {"p50": 0.1, "p99": 0.1, "p999": 0.1, "max": 50.0}),
    ],
)
def test_quantiles_are_nearest_rank_over_bucket_lower_bounds(counts: dict[int, int], expected: dict[str, float | None]) -> None:
    assert quantiles_ms(counts) == expected


def test_a_diff_keeps_what_was_added_between_two_json_snapshots() -> None:
    assert diff_counts({"10": 5, "20": 3, "40": 1}, {"10": 5, "20": 1}) == {20: 2, 40: 1}


class Event(NamedTuple):
    published_ns: int
    sequenced_ns: int


def test_a_batch_counts_each_event_in_each_stage() -> None:
    timings = Timings()
    timings.record([Event(0, 2_000_000), Event(1_000_000, 2_500_000)], read_ns=5_000_000, written_ns=5_100_000)
    stages = timings.snapshot()["stages"]
    assert stages["published_to_sequenced"]["counts_us"] == {str(lower_bound(bucket_of(2000))): 1, str(lower_bound(bucket_of(1500))): 1}
    assert stages["sequenced_to_read"]["counts_us"] == {str(lower_bound(bucket_of(3000))): 1, str(lower_bound(bucket_of(2500))): 1}
    assert stages["read_to_written"]["counts_us"] == {"96": 2}


def test_the_loop_lag_timer_and_the_gc_callback_count_while_started() -> None:
    timings = Timings()

    async def main() -> None:
        timings.start(asyncio.get_running_loop())
        try:
            await async_wait_until(timings.loop_lag.sparse, what="the 10 ms lag timer fired")
            gc.collect()
        finally:
            timings.stop()

    asyncio.run(main())
    assert sum(timings.gc_collections) >= 1
    assert timings.gc_pause.sparse()
    assert timings._on_gc not in gc.callbacks


def test_histogram_counts_repeats_at_once() -> None:
    hist = LogHistogram()
    hist.add(100, 3)
    assert hist.describe()["count"] == 3
