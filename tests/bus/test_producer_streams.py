"""The acknowledged ingress's per-stream decisions (CONTRACT section 2), without sockets."""

from __future__ import annotations

import pytest

from bus.producer_streams import Decision, ProducerStreams, Verdict

S, D, R, X = Verdict.SEQUENCE, Verdict.DUPLICATE, Verdict.RESEND, Verdict.REJECT

# Each row: the stream's history as (event_id, prev_id, valid) steps, and the decision of each step.
TABLE: list[tuple[str, list[tuple[int, int, bool]], list[Decision]]] = [
    ("first event of an unknown stream, prev 0", [(1, 0, True)], [Decision(S, 1)]),
    ("unknown stream takes any prev (a broker without journal)", [(7, 5, True)], [Decision(S, 7)]),
    ("in order", [(1, 0, True), (2, 1, True), (5, 2, True)], [Decision(S, 1), Decision(S, 2), Decision(S, 5)]),
    ("re-sent last event", [(1, 0, True), (1, 0, True)], [Decision(S, 1), Decision(D, 1)]),
    ("re-sent older event", [(1, 0, True), (2, 1, True), (1, 0, True)], [Decision(S, 1), Decision(S, 2), Decision(D, 2)]),
    ("duplicate with a wrong prev is still a duplicate", [(3, 0, True), (2, 9, True)], [Decision(S, 3), Decision(D, 3)]),
    ("gap: nothing sequenced, resend after last", [(1, 0, True), (3, 2, True)], [Decision(S, 1), Decision(R, 1)]),
    ("gap, then the resend fills it", [(1, 0, True), (3, 2, True), (2, 1, True), (3, 2, True)],
     [Decision(S, 1), Decision(R, 1), Decision(S, 2), Decision(S, 3)]),
    ("malformed first event is rejected and handled", [(1, 0, False), (2, 1, True)], [Decision(X, 1), Decision(S, 2)]),
    ("malformed in order is rejected, last moves past it", [(1, 0, True), (2, 1, False), (3, 2, True)],
     [Decision(S, 1), Decision(X, 2), Decision(S, 3)]),
    ("re-sent rejected event is a duplicate", [(1, 0, False), (1, 0, False)], [Decision(X, 1), Decision(D, 1)]),
    ("malformed after a gap: the gap comes first", [(1, 0, True), (3, 2, False)], [Decision(S, 1), Decision(R, 1)]),
]


@pytest.mark.parametrize("steps, expected", [pytest.param(s, e, id=name) for name, s, e in TABLE])
def test_decisions_follow_the_ack_protocol(steps: list[tuple[int, int, bool]], expected: list[Decision]) -> None:
    streams = ProducerStreams()
    assert [streams.decide("orders:a", *step) for step in steps] == expected


def test_streams_are_independent() -> None:
    streams = ProducerStreams()
    assert streams.decide("a", 5, 0, True) == Decision(S, 5)
    assert streams.decide("b", 1, 0, True) == Decision(S, 1)
    assert streams.decide("a", 1, 0, True) == Decision(D, 5)
    assert (streams.last("a"), streams.last("b"), streams.last("c")) == (5, 1, None)


def test_the_least_recently_used_stream_is_forgotten_first_and_counted() -> None:
    streams = ProducerStreams(max_streams=2)
    streams.decide("a", 1, 0, True)
    streams.decide("b", 1, 0, True)
    streams.decide("a", 1, 0, True)  # a duplicate is a use too
    streams.decide("c", 1, 0, True)
    assert (streams.last("a"), streams.last("b"), streams.last("c")) == (1, None, 1)
    assert (len(streams), streams.evicted) == (2, 1)
    # forgotten: its next event is taken whatever its prev_id (the protocol's unknown-stream rule)
    assert streams.decide("b", 9, 4, True) == Decision(S, 9)


def test_changes_name_new_lasts_and_forgotten_streams_once() -> None:
    streams = ProducerStreams(max_streams=2)
    streams.decide("a", 1, 0, True)
    streams.decide("b", 2, 0, False)
    streams.decide("b", 3, 9, True)  # a resend changes nothing
    assert streams.take_changes() == ({"a": 1, "b": 2}, set())
    streams.decide("c", 1, 0, True)
    assert streams.take_changes() == ({"c": 1}, {"a"})
    assert streams.take_changes() == ({}, set())


def test_restore_loads_lasts_in_lru_order_and_is_not_a_change() -> None:
    streams = ProducerStreams(max_streams=2)
    streams.restore([("old", 3), ("mid", 4), ("new", 5)])
    assert (streams.last("old"), streams.last("mid"), streams.last("new")) == (None, 4, 5)
    assert streams.take_changes() == ({}, {"old"})
    assert streams.decide("mid", 4, 3, True) == Decision(D, 4)
    assert streams.decide("new", 6, 5, True) == Decision(S, 6)


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ProducerStreams(max_streams=0)
