"""Per-user stream limits and the memory of recent revocations, without sockets."""

from __future__ import annotations

from bus.topics import StreamKey
from streamer.admission import Admission
from streamer.revocations import Ending, Revocations

KEY = StreamKey(10, 4)
REVOKED = Ending("permission_revoked", "Your access to strategy 4 was revoked.")
INACTIVE = Ending("strategy_inactive", "Strategy 4 was deactivated.")


def test_a_user_holds_at_most_the_limit_and_a_release_gives_one_back() -> None:
    admission = Admission(limit=2)
    assert [admission.reserve(10) for _ in range(3)] == [True, True, False]
    assert admission.reserve(11)  # per user
    admission.release(10)
    assert admission.streams_per_user == {10: 1, 11: 1}
    assert admission.reserve(10)
    for _ in range(2):
        admission.release(10)
    admission.release(11)
    admission.release(11)  # one too many changes nothing
    assert admission.streams_per_user == {}


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
