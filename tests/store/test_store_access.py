"""The access rule: owner or linked account, nothing else, whatever the ids look like."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlalchemy.orm import Session

from bus.topics import MAX_ID, StreamKey
from store.access import can_stream, linked_accounts, stream_keys_of_strategy, streamable_among, streamable_strategies
from store.models import Account, Strategy, StrategyAccount, User
from tests.store.factories import add_account, add_link, add_strategy, add_user


@pytest.fixture
def world(session: Session) -> Session:
    """Ids chosen to collide as text prefixes (1, 10, 11), for users, accounts and strategies.

    strategy 1 (owner 1) ← account 10 (user 10)
    strategy 10 (owner 10) ← accounts 11 and 101 (user 11)
    strategy 11 (owner 1), no links; account 1 (user 1) and account 100 (user 11) unlinked
    """
    users = {uid: add_user(session, f"user{uid}", uid) for uid in (1, 10, 11)}
    strategies = {
        sid: add_strategy(session, users[owner], f"group{sid}", sid)
        for sid, owner in ((1, 1), (10, 10), (11, 1))
    }
    accounts = {
        aid: add_account(session, users[uid], f"account{aid}", aid)
        for aid, uid in ((1, 1), (10, 10), (11, 11), (100, 11), (101, 11))
    }
    for sid, aid in ((1, 10), (10, 11), (10, 101)):
        add_link(session, strategies[sid], accounts[aid])
    session.commit()
    return session


ACCESS_TABLE = [
    pytest.param(1, 1, True, id="owner"),
    pytest.param(1, 11, True, id="owner-of-second-strategy"),
    pytest.param(10, 10, True, id="owner-10"),
    pytest.param(10, 1, True, id="linked-account"),
    pytest.param(11, 10, True, id="two-linked-accounts"),
    pytest.param(1, 10, False, id="own-account-not-linked-and-prefix-of-10"),
    pytest.param(10, 11, False, id="prefix-10-of-11"),
    pytest.param(11, 1, False, id="other-users-account-is-linked"),
    pytest.param(11, 11, False, id="account-id-equals-strategy-id-but-unlinked"),
    pytest.param(1, 999, False, id="no-such-strategy"),
    pytest.param(999, 1, False, id="no-such-user"),
    pytest.param(0, 1, False, id="user-zero"),
    pytest.param(1, 0, False, id="strategy-zero"),
    pytest.param(-1, 1, False, id="negative-user"),
    pytest.param(1, MAX_ID + 1, False, id="strategy-beyond-64-bits"),
    pytest.param(MAX_ID + 1, 1, False, id="user-beyond-64-bits"),
]


@pytest.mark.parametrize(("user_id", "strategy_id", "allowed"), ACCESS_TABLE)
def test_can_stream_allows_owner_or_linked_account_only(
    world: Session, user_id: int, strategy_id: int, allowed: bool
) -> None:
    assert can_stream(world, user_id, strategy_id) is allowed


def test_streamable_among_answers_the_access_table_in_one_call(world: Session) -> None:
    world.get_one(Strategy, 11).is_active = False
    world.commit()
    for user_id in {row.values[0] for row in ACCESS_TABLE}:
        asked = [row.values[1] for row in ACCESS_TABLE if row.values[0] == user_id]
        allowed = {row.values[1] for row in ACCESS_TABLE if row.values[0] == user_id and row.values[2]}
        assert set(streamable_among(world, user_id, asked)) == allowed, user_id  # type: ignore[arg-type]
    assert streamable_among(world, 1, [1, 11, 10]) == {1: True, 11: False}


@pytest.mark.parametrize(
    ("user_id", "strategy_ids"),
    [(1, [1, 11]), (10, [1, 10]), (11, [10]), (999, []), (0, [])],
)
def test_streamable_strategies_lists_owned_and_linked_by_id(
    world: Session, user_id: int, strategy_ids: list[int]
) -> None:
    assert [s.id for s in streamable_strategies(world, user_id)] == strategy_ids


@pytest.mark.parametrize(
    ("strategy_id", "keys"),
    [(1, [StreamKey(10, 1)]), (10, [StreamKey(11, 10)]), (11, []), (999, []), (-5, [])],
)
def test_stream_keys_of_strategy_are_linked_account_owners_once_each(
    world: Session, strategy_id: int, keys: list[StreamKey]
) -> None:
    assert stream_keys_of_strategy(world, strategy_id) == keys


def test_linked_accounts_are_the_linked_ones_by_id(world: Session) -> None:
    assert [a.id for a in linked_accounts(world, 10)] == [11, 101]
    assert linked_accounts(world, 11) == []


def test_inactive_strategy_is_still_streamable_the_streamer_answers_409(world: Session) -> None:
    world.get_one(Strategy, 1).is_active = False
    world.commit()
    assert can_stream(world, 10, 1)
    assert [s.id for s in streamable_strategies(world, 10)] == [1, 10]


# Random worlds of 3 users, 3 strategies and 4 accounts, checked against the rule in plain Python.
worlds = st.tuples(
    st.lists(st.integers(1, 3), min_size=3, max_size=3),  # owner of strategies 1..3
    st.lists(st.integers(1, 3), min_size=4, max_size=4),  # user of accounts 1..4
    st.sets(st.tuples(st.integers(1, 3), st.integers(1, 4))),  # links (strategy, account)
)


@settings(
    max_examples=30,
    deadline=None,
    # Each example empties the tables itself, so sharing the per-test database is safe.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(worlds)
def test_can_stream_matches_the_rule_on_random_worlds(
    session: Session, world: tuple[list[int], list[int], set[tuple[int, int]]]
) -> None:
    owners, account_users, links = world
    for model in (StrategyAccount, Account, Strategy, User):
        session.execute(delete(model))
    users = {uid: add_user(session, f"u{uid}", uid) for uid in (1, 2, 3)}
    strategies = [add_strategy(session, users[o], f"s{i}", i) for i, o in enumerate(owners, 1)]
    accounts = [add_account(session, users[u], f"a{i}", i) for i, u in enumerate(account_users, 1)]
    for sid, aid in links:
        add_link(session, strategies[sid - 1], accounts[aid - 1])
    for uid in (1, 2, 3):
        for sid in (1, 2, 3):
            expected = owners[sid - 1] == uid or any(
                s == sid and account_users[a - 1] == uid for s, a in links
            )
            assert can_stream(session, uid, sid) is expected, (uid, sid)
    session.rollback()
