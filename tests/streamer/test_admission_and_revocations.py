"""Per-user stream limits across streamers and the memory of recent revocations, without sockets."""

from __future__ import annotations

import pytest

from bus.topics import StreamKey
from streamer.admission import MAX_PEERS, Admission
from streamer.revocations import Ending, Revocations

KEY = StreamKey(10, 4)
REVOKED = Ending("permission_revoked", "Your access to strategy 4 was revoked.")
INACTIVE = Ending("strategy_inactive", "Strategy 4 was deactivated.")


def test_a_user_holds_at_most_the_limit_and_a_release_gives_one_back() -> None:
    admission = Admission(limit=2)
    assert [admission.reserve(10, 0.0) for _ in range(3)] == [True, True, False]
    assert admission.reserve(11, 0.0)  # per user
    admission.release(10)
    assert admission.streams_per_user == {10: 1, 11: 1}
    assert admission.reserve(10, 0.0)
    for _ in range(2):
        admission.release(10)
    admission.release(11)
    admission.release(11)  # one too many changes nothing
    assert admission.streams_per_user == {}


# Streamer "b" (limit 3) holding `local` streams of user 10, having heard `peers` ({peer: (count, heard at)})
# at t=100: does one more stream fit? Peers' counts are forgotten PEER_TTL_S (3.5 s) after they were heard.
RESERVE_CASES = [
    (0, {}, True),
    (2, {}, True),
    (3, {}, False),
    (1, {"a": (2, 99.0)}, False),  # 1 here + 2 elsewhere = the limit
    (0, {"a": (2, 99.0)}, True),
    (0, {"a": (1, 99.0), "c": (1, 99.5)}, True),
    (1, {"a": (1, 99.0), "c": (1, 99.5)}, False),
    (1, {"a": (2, 96.0)}, True),  # heard 4 s ago: a crashed peer counts no more
    (1, {"a": (2, 96.6)}, False),  # 3.4 s ago: still counts
]


@pytest.mark.parametrize(("local", "peers", "fits"), RESERVE_CASES)
def test_a_stream_fits_when_this_streamer_and_the_fresh_counts_of_its_peers_stay_below_the_limit(
    local: int, peers: dict[str, tuple[int, float]], fits: bool
) -> None:
    admission = Admission(limit=3, me="b")
    for peer, (count, heard_at) in peers.items():
        admission.heard(peer, [(10, count)], heard_at)
    for _ in range(local):
        admission.streams_per_user[10] = admission.streams_per_user.get(10, 0) + 1
    assert admission.reserve(10, now=100.0) is fits
    assert admission.reserve(11, now=100.0)  # another user is not affected


# Streamer `me` (limit 3) holds `local` streams of user 10 and hears `peer` announce `count`, other peers
# having announced `others`: how many must it shed? Only a peer ranked before it (a smaller id) makes it shed.
SHED_CASES = [
    ("b", 2, "a", 1, {}, []),
    ("b", 3, "a", 1, {}, [(10, 1)]),
    ("b", 3, "a", 3, {}, [(10, 3)]),
    ("a", 3, "b", 3, {}, []),  # "a" ranks first: "b" sheds, not "a"
    ("b", 2, "a", 1, {"c": (3, 100.0)}, []),  # "c" ranks after "b": it sheds its own
    ("c", 2, "b", 1, {"a": (1, 100.0)}, [(10, 1)]),  # 1 + 1 before it: "c" keeps 1 of 2
    ("b", 0, "a", 5, {}, []),  # nothing here to shed
]


@pytest.mark.parametrize(("me", "local", "peer", "count", "others", "excess"), SHED_CASES)
def test_a_streamer_sheds_only_what_it_holds_beyond_the_limit_left_by_the_peers_ranked_before_it(
    me: str, local: int, peer: str, count: int, others: dict[str, tuple[int, float]], excess: list[tuple[int, int]]
) -> None:
    admission = Admission(limit=3, me=me)
    for other, (other_count, heard_at) in others.items():
        admission.heard(other, [(10, other_count)], heard_at)
    admission.streams_per_user.update({10: local} if local else {})
    assert admission.heard(peer, [(10, count)], 100.0) == excess


def test_changes_are_announced_once_with_zeros_and_the_first_one_calls_on_change() -> None:
    admission, calls = Admission(limit=5, me="b"), []
    admission.on_change = lambda: calls.append(1)
    assert admission.reserve(10, 0.0) and admission.reserve(10, 0.0) and admission.reserve(11, 0.0)
    admission.release(11)
    assert calls == [1]  # one flush scheduled for the burst
    assert sorted(admission.changes()) == [(10, 2), (11, 0)]
    assert admission.changes() == []
    admission.release(10)
    assert calls == [1, 1] and admission.changes() == [(10, 1)] and admission.full() == [(10, 1)]


def test_a_peer_that_leaves_or_falls_silent_is_forgotten_and_a_zero_drops_its_count() -> None:
    admission = Admission(limit=2, me="b")
    admission.heard("a", [(10, 2), (11, 1)], 100.0)
    admission.heard("c", [(12, 2)], 100.0)
    assert admission.peers == 2 and not admission.reserve(10, 100.0)
    admission.heard("a", [(10, 0)], 100.5)
    assert admission.reserve(10, 100.5) and not admission.reserve(12, 100.5)
    admission.forget_peer("c")
    assert admission.reserve(12, 100.5)
    admission.expire(104.0)  # "a" last heard at 100 for user 11
    assert admission.peers == 0 and admission.elsewhere(11, 104.0) == 0


def test_peers_beyond_the_bound_are_ignored_and_counted() -> None:
    admission = Admission(limit=2, me="b")
    for number in range(MAX_PEERS + 3):
        admission.heard(f"p{number:04d}", [(10, 1)], 100.0)
    assert admission.peers == MAX_PEERS and admission.peers_refused == 3


def test_a_revocation_ends_only_streams_whose_check_began_before_it_arrived() -> None:
    memory = Revocations(memory_s=120)
    memory.remember(KEY, REVOKED, now=100.0)
    assert memory.since(KEY, checked_at=99.0, now=101.0) == REVOKED
    assert memory.since(KEY, checked_at=100.0, now=101.0) == REVOKED
    assert memory.since(KEY, checked_at=100.5, now=101.0) is None  # read after it: the answer saw it
    assert memory.since(StreamKey(11, 4), checked_at=99.0, now=101.0) is None


def test_a_strategy_wide_revocation_ends_every_key_of_the_strategy() -> None:
    memory = Revocations(memory_s=120)
    memory.remember(4, INACTIVE, now=100.0)
    assert memory.since(KEY, checked_at=99.0, now=101.0) == INACTIVE
    assert memory.since(StreamKey(11, 4), checked_at=99.0, now=101.0) == INACTIVE
    assert memory.since(StreamKey(10, 40), checked_at=99.0, now=101.0) is None


def test_revocations_are_forgotten_after_their_memory_oldest_first() -> None:
    memory = Revocations(memory_s=120)
    memory.remember(KEY, REVOKED, now=0.0)
    memory.remember(4, INACTIVE, now=50.0)
    memory.remember(KEY, REVOKED, now=60.0)  # again: kept from its latest arrival
    assert memory.since(KEY, checked_at=-1.0, now=170.0) == REVOKED
    assert len(memory) == 2
    assert memory.since(StreamKey(11, 4), checked_at=-1.0, now=175.0) is None  # the strategy's expired at 170
    assert len(memory) == 1
    memory.remember(StreamKey(1, 1), REVOKED, now=200.0)
    assert len(memory) == 1  # KEY's expired at 180
