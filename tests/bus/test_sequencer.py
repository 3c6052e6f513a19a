"""The sequencer's numbering and its memory bounds, without sockets."""

from __future__ import annotations

import pytest

from bus import protocol
from bus.sequencer import Sequencer


def test_seq_counts_from_one_per_key_and_headers_carry_epoch_and_times() -> None:
    seq = Sequencer(epoch=42)
    headers = [seq.sequence(t, b"p", 10, 20) for t in (b"k/1/1/", b"k/1/10/", b"k/1/1/")]
    assert [protocol.unpack_header(h) for h in headers] == [(42, 1, 10, 20), (42, 1, 10, 20), (42, 2, 10, 20)]


def test_history_ring_keeps_the_last_n_events_of_a_key() -> None:
    seq = Sequencer(epoch=1, history=3)
    for i in range(10):
        seq.sequence(b"k/1/1/", str(i).encode(), 0, 0)
    # seqs 1..10 carry payloads "0".."9"; the ring holds seqs 8, 9, 10
    assert [p for _, p in seq.replay(b"k/1/1/", 1, 7).events] == [b"7", b"8", b"9"]
    assert not seq.replay(b"k/1/1/", 1, 6).ok


def test_keys_beyond_the_bound_lose_their_history_least_recently_active_first_but_keep_their_seq() -> None:
    seq = Sequencer(epoch=1, history=10, max_histories=2)
    for topic in (b"k/1/1/", b"k/2/2/", b"k/1/1/", b"k/3/3/"):
        seq.sequence(topic, b"p", 0, 0)
    assert seq.keys_with_history == 2
    assert not seq.replay(b"k/2/2/", 1, 0).ok  # evicted: its range is gone
    assert seq.replay(b"k/1/1/", 1, 0).ok
    seq.sequence(b"k/2/2/", b"p", 0, 0)
    assert seq.head(b"k/2/2/") == 2  # the seq never restarts within an epoch


@pytest.mark.parametrize("history, max_histories", [(0, 1), (1, 0)])
def test_bounds_must_be_positive(history: int, max_histories: int) -> None:
    with pytest.raises(ValueError):
        Sequencer(epoch=1, history=history, max_histories=max_histories)


def test_a_dropped_history_is_told_before_the_event_that_displaced_it_is_kept() -> None:
    told: list[tuple[bytes, int]] = []
    seq = Sequencer(epoch=1, history=10, max_histories=2)
    seq.on_forget = lambda topic: told.append((topic, seq.keys_with_history))
    for topic in (b"k/1/1/", b"k/2/2/", b"k/3/3/", b"k/1/1/"):
        seq.sequence(topic, b"p", 0, 0)
    assert told == [(b"k/1/1/", 2), (b"k/2/2/", 2)]


def test_restore_brings_back_heads_and_histories_within_the_bounds() -> None:
    first = Sequencer(epoch=7, history=3)
    for i in range(5):
        first.sequence(b"k/1/1/", str(i).encode(), 0, 0)
    first.sequence(b"k/2/2/", b"x", 0, 0)
    frames = first.replay(b"k/1/1/", 7, 2).events
    told: list[bytes] = []
    again = Sequencer(epoch=7, history=2, max_histories=1, on_forget=told.append)
    again.restore({b"k/1/1/": 5, b"k/2/2/": 1, b"k/9/9/": 4}, [(b"k/2/2/", [(b"h", b"x")]), (b"k/1/1/", frames)])
    assert told == [b"k/2/2/"]
    assert (again.head(b"k/1/1/"), again.head(b"k/9/9/"), again.keys_with_history) == (5, 4, 1)
    assert [p for _, p in again.replay(b"k/1/1/", 7, 3).events] == [b"3", b"4"]  # the smaller history kept the newest
    assert not again.replay(b"k/1/1/", 7, 2).ok
    assert again.sequence(b"k/9/9/", b"p", 0, 0) and again.head(b"k/9/9/") == 5
