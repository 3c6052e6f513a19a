"""The acknowledged ingress's per-stream decisions (CONTRACT section 2), without sockets."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bus.producer_streams import Decision, ProducerStreams, RejectionChanges, Verdict
from bus.protocol import MAX_REASON

S, D, R, X, U, XX = Verdict.SEQUENCE, Verdict.DUPLICATE, Verdict.RESEND, Verdict.REJECT, Verdict.UNKNOWN, Verdict.REJECTED
F = Verdict.REFUSED

# Each row: the stream's history as (event_id, prev_id, valid) steps, and the decision of each step.
TABLE: list[tuple[str, list[tuple[int, int, bool]], list[Decision]]] = [
    ("first event of an unknown stream, prev 0", [(1, 0, True)], [Decision(S, 1)]),
    ("unknown stream refuses an event after its start: the ones before may be lost", [(7, 5, True)], [Decision(U, 7)]),
    ("unknown stays unknown for a malformed event after its start", [(7, 5, False), (8, 7, True)], [Decision(U, 7), Decision(U, 8)]),
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
    ("re-sent rejected event is rejected again, never sequenced", [(1, 0, False), (1, 0, False)], [Decision(X, 1), Decision(XX, 1)]),
    # A relay SIGKILLed after the reject of 2, before writing it, resends 1.. after its restart: the ack of 1
    # must not jump over 2 (the relay would mark 2 sent without its reason), 2 is rejected again.
    ("the ack of a re-sent event stops below a rejection after it",
     [(1, 0, True), (2, 1, False), (3, 2, True), (1, 0, True), (2, 1, True), (3, 2, True)],
     [Decision(S, 1), Decision(X, 2), Decision(S, 3), Decision(D, 1), Decision(XX, 3), Decision(D, 3)]),
    ("a resend stops below a rejection after the relay's prev",
     [(1, 0, True), (2, 1, False), (3, 2, True), (9, 1, True)],
     [Decision(S, 1), Decision(X, 2), Decision(S, 3), Decision(R, 1)]),
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


def test_beyond_the_bound_a_new_stream_is_refused_and_no_known_stream_is_ever_forgotten() -> None:
    streams = ProducerStreams(max_streams=2)
    streams.decide("a", 1, 0, True)
    streams.decide("b", 5, 0, True)
    # a flood of new names: refused, unanswered, counted; neither a nor b pushed out
    assert streams.decide("c", 1, 0, True) == Decision(F, 1)
    assert streams.decide("d", 9, 4, True) == Decision(F, 9)
    assert streams.hello("e", 0) == Decision(F, 0)
    assert (streams.last("a"), streams.last("b"), streams.last("c"), streams.last("e")) == (1, 5, None, None)
    assert (len(streams), streams.refused) == (2, 3)
    # b's relay, its acks lost, resends 3..5: duplicates, never sequenced again (a forgotten b took them)
    assert streams.decide("b", 3, 2, True) == Decision(D, 5)
    assert streams.hello("b", 2) == Decision(D, 5)


def test_changes_name_new_lasts_once() -> None:
    streams = ProducerStreams(max_streams=2)
    streams.decide("a", 1, 0, True)
    streams.decide("b", 2, 0, False)
    streams.decide("b", 3, 9, True)  # a resend changes nothing
    assert streams.take_changes() == {"a": 1, "b": 2}
    streams.decide("c", 1, 0, True)  # refused
    assert streams.take_changes() == {}


def test_restore_loads_every_stream_even_beyond_the_bound_and_is_not_a_change() -> None:
    streams = ProducerStreams(max_streams=2)
    streams.restore([("old", 3), ("mid", 4), ("new", 5)])
    assert (streams.last("old"), streams.last("mid"), streams.last("new")) == (3, 4, 5)
    assert streams.take_changes() == {}
    assert streams.decide("mid", 4, 3, True) == Decision(D, 4)
    assert streams.decide("new", 6, 5, True) == Decision(S, 6)
    assert streams.decide("other", 1, 0, True) == Decision(F, 1)


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ProducerStreams(max_streams=0)


# Each row: `last` before the hello (None: unknown), the relay's acked, the decision, `last` after.
HELLOS: list[tuple[str, int | None, int, Decision, int]] = [
    ("unknown stream is known from the relay's acked", None, 4, Decision(D, 4), 4),
    ("unknown stream, nothing confirmed yet", None, 0, Decision(D, 0), 0),
    ("known and level with the relay: ack last", 4, 4, Decision(D, 4), 4),
    ("known and ahead (the relay's acks were lost): ack last", 6, 4, Decision(D, 6), 6),
    ("known and behind what the relay was told: resend last", 2, 4, Decision(R, 2), 2),
]


@pytest.mark.parametrize(("before", "acked", "decision", "after"), [pytest.param(*h[1:], id=h[0]) for h in HELLOS])
def test_hello_says_where_an_unknown_stream_restarts(before: int | None, acked: int, decision: Decision, after: int) -> None:
    streams = ProducerStreams()
    if before is not None:
        streams.hello("a", before)
    assert streams.hello("a", acked) == decision
    assert streams.last("a") == after


# A hello of a known stream, `acked` behind `last` (its acks lost), with rejections remembered in between:
# its ack stops below the first rejection above `acked`, which the relay may never have heard of (a `reject`
# dropped at the ROUTER's high-water mark); the rows it then sends again are answered `reject` again.
CAPPED_HELLOS: list[tuple[str, list[int], int, Decision]] = [
    ("no rejection: ack last", [], 2, Decision(D, 6)),
    ("a rejection above acked: ack below it", [4], 2, Decision(D, 3)),
    ("the first of two rejections above acked", [4, 5], 2, Decision(D, 3)),
    ("a rejection at acked is known to the relay: ack last", [2], 2, Decision(D, 6)),
    ("a rejection right after acked: ack acked", [3], 2, Decision(D, 2)),
    ("a rejection at last", [6], 2, Decision(D, 5)),
    ("behind what the relay was told: resend last, whatever the rejections", [4], 7, Decision(R, 6)),
]


@pytest.mark.parametrize(("rejected", "acked", "decision"), [pytest.param(*h[1:], id=h[0]) for h in CAPPED_HELLOS])
def test_the_ack_of_a_hello_stops_below_a_remembered_rejection_after_acked(rejected: list[int], acked: int, decision: Decision) -> None:
    streams = ProducerStreams()
    for event_id in range(1, 7):
        streams.decide("a", event_id, event_id - 1, event_id not in rejected, "bad")
    assert streams.hello("a", acked) == decision
    assert streams.last("a") == 6


def test_after_hello_the_stream_chains_from_acked_and_the_hello_is_journaled() -> None:
    streams = ProducerStreams()
    assert streams.decide("a", 7, 6, True) == Decision(U, 7)
    assert streams.take_changes() == {}  # an `unknown` changes nothing
    streams.hello("a", 4)
    assert streams.take_changes() == {"a": 4}
    assert streams.decide("a", 7, 6, True) == Decision(R, 4)  # still in flight from before the hello
    assert streams.decide("a", 5, 4, True) == Decision(S, 5)


def test_a_rejection_is_remembered_with_its_reason_and_the_oldest_are_forgotten_beyond_the_byte_bound() -> None:
    cost = len("a") + len("bad") + 64
    streams = ProducerStreams(rejection_bytes=2 * cost)
    for event_id in (1, 2, 3):
        assert streams.decide("a", event_id, event_id - 1, False, "bad") == Decision(X, event_id)
    assert [streams.rejection("a", n) for n in (1, 2, 3)] == [None, "bad", "bad"]
    assert streams.rejections_forgotten == 1
    # forgotten: a resend of 1 is a plain duplicate again (the reason is lost, the event still never sequenced)
    assert streams.decide("a", 1, 0, True) == Decision(D, 1)


COST = len("a") + len("bad") + 64  # one rejection of stream "a" with reason "bad"
# Each row: the byte bound (in rejections of COST), rejections restored first (event ids of "a"), then the
# events decided as (event_id, prev_id, valid), and what the next take_rejection_changes names.
JOURNALED: list[tuple[str, int, list[int], list[tuple[int, int, bool]], RejectionChanges]] = [
    ("a rejection is named once, with its reason", 4, [], [(1, 0, False)], RejectionChanges([("a", 1, "bad")], [])),
    ("a sequenced event, a duplicate or a re-sent rejection names none", 4, [], [(1, 0, True), (1, 0, True)],
     RejectionChanges([], [])),
    ("oldest first", 4, [], [(1, 0, False), (2, 1, True), (3, 2, False)],
     RejectionChanges([("a", 1, "bad"), ("a", 3, "bad")], [])),
    ("remembered and forgotten in one batch: neither written nor deleted", 2, [],
     [(1, 0, False), (2, 1, False), (3, 2, False)], RejectionChanges([("a", 2, "bad"), ("a", 3, "bad")], [])),
    ("a restored rejection pushed out is deleted", 2, [1, 2], [(3, 2, False)], RejectionChanges([("a", 3, "bad")], [("a", 1)])),
    ("restored beyond the bound: the oldest are deleted, the newest kept", 2, [1, 2, 3, 4], [],
     RejectionChanges([], [("a", 1), ("a", 2)])),
    ("a rejection larger than the bound is never written", 0, [], [(1, 0, False)], RejectionChanges([], [])),
]


@pytest.mark.parametrize(("bound", "restored", "steps", "changes"), [pytest.param(*row[1:], id=row[0]) for row in JOURNALED])
def test_rejection_changes_name_what_the_journal_writes_and_deletes(
    bound: int, restored: list[int], steps: list[tuple[int, int, bool]], changes: RejectionChanges
) -> None:
    streams = ProducerStreams(rejection_bytes=bound * COST)
    streams.restore([("a", max(restored, default=0))] if restored else [])
    streams.restore_rejections([("a", n, "bad") for n in restored])
    for event_id, prev_id, valid in steps:
        streams.decide("a", event_id, prev_id, valid, "bad")
    assert streams.take_rejection_changes() == changes
    assert streams.take_rejection_changes() == RejectionChanges([], [])
    assert streams.rejections <= bound


def test_restored_rejections_are_answered_rejected_again_and_cap_the_acks() -> None:
    streams = ProducerStreams()
    streams.restore([("a", 3)])
    streams.restore_rejections([("a", 2, "bad")])
    assert streams.decide("a", 1, 0, True) == Decision(D, 1)  # stops below 2
    assert streams.decide("a", 2, 1, True) == Decision(XX, 3)
    assert streams.rejection("a", 2) == "bad"


def test_a_reason_is_remembered_as_the_reject_carries_it() -> None:
    streams = ProducerStreams()
    streams.decide("a", 1, 0, False, "x" * 500)
    assert streams.rejection("a", 1) == "x" * MAX_REASON
    assert streams.take_rejection_changes().remembered == [("a", 1, "x" * MAX_REASON)]


A, B = b"\x00relay-a", b"\x00relay-b"  # two ROUTER identities (connections) of one relay
Step = Callable[[ProducerStreams], object]


def event(event_id: int, prev_id: int, valid: bool) -> Step:
    return lambda streams: streams.decide("a", event_id, prev_id, valid, "bad")


def heard(connection: bytes) -> Step:
    return lambda streams: streams.heard("a", connection)


def told(event_id: int, connection: bytes) -> Step:
    return lambda streams: streams.told("a", event_id, connection)


# Each row: the byte bound (in rejections of COST; None: the default), rejections restored first (event ids of "a"),
# the steps on stream "a", then which rejections are untold and how many were forgotten untold.
UNTOLD: list[tuple[str, int | None, list[int], list[Step], list[int], int]] = [
    ("a rejection is untold until its reject is queued", None, [],
     [event(1, 0, False), heard(A)], [1], 0),
    ("queued to the stream's connection: told", None, [],
     [event(1, 0, False), heard(A), told(1, A)], [], 0),
    ("a sequenced event leaves nothing untold", None, [], [event(1, 0, True), heard(A)], [], 0),
    ("a dropped reject stays untold while later events are sequenced (the cross-batch gap)", None, [],
     [event(1, 0, False), heard(A), event(2, 1, True), heard(A), event(3, 2, True), heard(A)], [1], 0),
    ("queued to a connection the stream is not heard on: still untold", None, [],
     [event(1, 0, False), heard(A), told(1, B)], [1], 0),
    ("the stream heard on a new connection: every rejection untold again", None, [],
     [event(1, 0, False), heard(A), told(1, A), event(2, 1, True), heard(A),
      event(3, 2, False), heard(A), told(3, A), event(4, 3, True), heard(B)], [1, 3], 0),
    ("heard on the same connection again: nothing changes", None, [],
     [event(1, 0, False), heard(A), told(1, A), event(2, 1, True), heard(A)], [], 0),
    ("a re-sent rejected event is untold again (the relay asks for it)", None, [],
     [event(1, 0, False), heard(A), told(1, A), event(1, 0, False), heard(A)], [1], 0),
    ("restored rejections are untold (a reject queued before the restart may have died with it)", None, [1, 2],
     [], [1, 2], 0),
    ("restored, then heard and told", None, [1, 2], [heard(A), told(1, A), told(2, A)], [], 0),
    ("forgotten while untold: counted", 1, [],
     [event(1, 0, False), heard(A), event(2, 1, False), heard(A)], [2], 1),
    ("forgotten after it was told: not counted", 1, [],
     [event(1, 0, False), heard(A), told(1, A), event(2, 1, False), heard(A)], [2], 0),
]


@pytest.mark.parametrize(("bound", "restored", "steps", "untold", "forgotten"), [pytest.param(*row[1:], id=row[0]) for row in UNTOLD])
def test_a_rejection_stays_untold_until_its_reject_is_queued_to_the_connection_the_stream_is_heard_on(
    bound: int | None, restored: list[int], steps: list[Step], untold: list[int], forgotten: int
) -> None:
    streams = ProducerStreams() if bound is None else ProducerStreams(rejection_bytes=bound * COST)
    if restored:
        streams.restore([("a", max(restored))])
        streams.restore_rejections([("a", n, "bad") for n in restored])
    for step in steps:
        step(streams)
    assert (streams.untold("a"), streams.untold_forgotten, streams.untold_count) == (untold, forgotten, len(untold))


def test_untold_rejections_are_per_stream_and_go_when_the_stream_has_none_left() -> None:
    streams = ProducerStreams(rejection_bytes=2 * COST)
    streams.decide("a", 1, 0, False, "bad")
    streams.decide("b", 1, 0, False, "bad")
    streams.heard("a", A)
    streams.heard("b", B)
    streams.told("b", 1, B)
    assert (streams.untold("a"), streams.untold("b")) == ([1], [])
    streams.decide("b", 2, 1, False, "bad")  # pushes out a's only rejection, untold
    assert (streams.untold("a"), streams.untold("b"), streams.untold_forgotten) == ([], [2], 1)
    streams.heard("a", B)  # nothing of "a" is remembered: nothing to tell
    streams.heard("b", A)  # b on a new connection: its 1 is untold again, 2 still
    assert (streams.untold("a"), streams.untold("b"), streams.untold_count) == ([], [1, 2], 2)
