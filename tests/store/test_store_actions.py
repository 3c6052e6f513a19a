"""Admin actions: what they change, what they return, and how they refuse bad requests."""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bus import decimals
from bus.topics import MAX_ID
from store import actions, auth, demo
from store.access import can_stream
from store.errors import Conflict, InvalidInput, NotFound
from store.models import Account, Order, Strategy, StrategyAccount, User
from tests.store.factories import add_order


@pytest.fixture
def dana(session: Session) -> User:
    return actions.create_user(session, None, "dana", "pw-dana").user


def test_create_user_stores_hashes_and_returns_the_token_once(session: Session) -> None:
    user, api_token = actions.create_user(session, None, "dana", "pw-dana", is_admin=True)
    assert user.id > 0 and user.is_admin and user.username == "dana"
    assert api_token not in user.api_token_hash and "pw-dana" not in user.password_hash
    assert auth.user_for_api_token(session, api_token) is user
    assert auth.authenticate(session, "dana", "pw-dana") is user
    assert actions.create_user(session, None, "eve", "pw").user.is_admin is False


def test_create_user_refuses_a_taken_name(session: Session, dana: User) -> None:
    with pytest.raises(Conflict, match="dana"):
        actions.create_user(session, None, "dana", "other")
    assert session.scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.parametrize(
    ("username", "password"),
    [("", "pw"), ("a b", "pw"), (" dana", "pw"), ("x" * 65, "pw"), ("-dana", "pw"), ("dana", "")],
)
def test_create_user_refuses_bad_names_and_passwords(
    session: Session, username: str, password: str
) -> None:
    with pytest.raises(InvalidInput):
        actions.create_user(session, None, username, password)


def test_create_account_for_a_user(session: Session, dana: User) -> None:
    account = actions.create_account(session, None, "dana", "Main", "paper", 25_000)
    assert (account.user_id, account.name, account.exchange, account.capital) == (
        dana.id, "Main", "paper", 25_000.0
    )
    eve = actions.create_user(session, None, "eve", "pw").user
    assert actions.create_account(session, None, "eve", "Main", "paper", 1.5).user_id == eve.id


def test_create_account_refuses_unknown_user_and_duplicate_name(
    session: Session, dana: User
) -> None:
    with pytest.raises(NotFound, match="nobody"):
        actions.create_account(session, None, "nobody", "Main", "paper", 100)
    actions.create_account(session, None, "dana", "Main", "paper", 100)
    with pytest.raises(Conflict):
        actions.create_account(session, None, "dana", "Main", "binance", 200)


@pytest.mark.parametrize("capital", [0, -1, 0.0, math.nan, math.inf, -math.inf, True])
def test_create_account_refuses_capital_that_is_not_finite_and_positive(
    session: Session, dana: User, capital: float
) -> None:
    with pytest.raises(InvalidInput, match="capital") as refused:
        actions.create_account(session, None, "dana", "Main", "paper", capital)
    assert str(refused.value) == f"capital: expected a finite number greater than 0, got {capital}"


@pytest.mark.parametrize(("capital", "reason"), [
    (Decimal("1e-25"), "expected at most 24 decimals, got 1E-25"),  # it is greater than 0: that is not the reason
    (Decimal("1e-999999999"), "expected at most 24 decimals, got 1E-999999999"),
    (Decimal("1e21"), "expected less than 10^21, got 1E+21"),
    ("1" + "0" * 21, "expected less than 10^21, got '1" + "0" * 21 + "'"),
])
def test_a_capital_too_small_or_too_large_is_refused_for_that_reason(
    session: Session, dana: User, capital: str | Decimal, reason: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        actions.create_account(session, None, "dana", "Main", "paper", capital)
    assert str(refused.value) == f"capital: {reason}"


@pytest.mark.parametrize(
    "capital",
    ["1." + "0" * 24 + "1", "1." + "0" * 100 + "1", Decimal("1." + "0" * 100 + "1"), "123." + "0" * 78 + "1"],
    ids=["25 decimals", "102 digits", "102 digits as a JSON number", "82 digits"],
)
def test_capital_has_at_most_the_wires_decimals_since_the_equity_carries_them(
    session: Session, dana: User, capital: str | Decimal
) -> None:
    # Every position event of the account would carry an equity the wire refuses. Beyond 80 digits the
    # check rounded the value first (in the money context) and took 1.(100 zeros)1 as 1.
    with pytest.raises(InvalidInput, match="at most 24 decimals"):
        actions.create_account(session, None, "dana", "Main", "paper", capital)


@pytest.mark.parametrize("capital", ["5." + "0" * 30, "5." + "0" * 200, "5.000000000000000000000000"])
def test_zeros_beyond_the_wires_decimals_are_dropped_from_the_capital(session: Session, dana: User, capital: str) -> None:
    account = actions.create_account(session, None, "dana", "Main", "paper", capital)  # trailing zeros are 5
    session.expire_all()
    assert account.capital == Decimal(5)
    assert decimals.text(account.capital) == "5.000000000000000000000000"  # what equity carries: 24 decimals, no more


@pytest.mark.parametrize(("name", "exchange"), [("", "paper"), ("Main", ""), ("Main\n", "paper")])
def test_create_account_refuses_empty_names(
    session: Session, dana: User, name: str, exchange: str
) -> None:
    with pytest.raises(InvalidInput):
        actions.create_account(session, None, "dana", name, exchange, 100)


def test_create_strategy_is_active_with_a_working_webhook_token(
    session: Session, dana: User
) -> None:
    strategy, token = actions.create_strategy(session, None, "dana", "BTC Trend", "btc-trend")
    assert (strategy.owner_id, strategy.group_name) == (dana.id, "btc-trend")
    assert strategy.is_active is True
    assert auth.check_webhook_token(strategy, token)
    assert not auth.check_webhook_token(strategy, token[:-1])
    assert can_stream(session, dana.id, strategy.id)


def test_create_strategy_refuses_unknown_owner_taken_group_and_bad_names(
    session: Session, dana: User
) -> None:
    actions.create_strategy(session, None, "dana", "BTC Trend", "btc-trend")
    with pytest.raises(Conflict, match="btc-trend"):
        actions.create_strategy(session, None, "dana", "Other", "btc-trend")
    with pytest.raises(NotFound):
        actions.create_strategy(session, None, "nobody", "Other", "other")
    with pytest.raises(InvalidInput):
        actions.create_strategy(session, None, "dana", "Other", "has space")
    with pytest.raises(InvalidInput):
        actions.create_strategy(session, None, "dana", "", "other")


@pytest.fixture
def strategy_and_account(session: Session, dana: User) -> tuple[Strategy, Account]:
    strategy = actions.create_strategy(session, None, "dana", "BTC Trend", "btc-trend").strategy
    actions.create_user(session, None, "eve", "pw")
    account = actions.create_account(session, None, "eve", "Main", "paper", 1000)
    return strategy, account


def test_link_gives_the_account_owner_access_once(
    session: Session, strategy_and_account: tuple[Strategy, Account]
) -> None:
    strategy, account = strategy_and_account
    assert not can_stream(session, account.user_id, strategy.id)
    actions.link(session, None, strategy.id, account.id)
    assert can_stream(session, account.user_id, strategy.id)
    with pytest.raises(Conflict):
        actions.link(session, None, strategy.id, account.id)


BAD_IDS = [0, -1, 999_999, MAX_ID, MAX_ID + 1]


@pytest.mark.parametrize("bad_id", BAD_IDS)
@pytest.mark.parametrize("action", [actions.link, actions.unlink])
def test_link_and_unlink_refuse_unknown_ids(
    session: Session,
    strategy_and_account: tuple[Strategy, Account],
    action: Callable[..., object],
    bad_id: int,
) -> None:
    strategy, account = strategy_and_account
    with pytest.raises(NotFound, match="strategy"):
        action(session, None, bad_id, account.id)
    with pytest.raises(NotFound, match="account"):
        action(session, None, strategy.id, bad_id)


def test_unlink_removes_access_and_refuses_a_missing_link(
    session: Session, strategy_and_account: tuple[Strategy, Account]
) -> None:
    strategy, account = strategy_and_account
    with pytest.raises(NotFound, match="not linked"):
        actions.unlink(session, None, strategy.id, account.id)
    actions.link(session, None, strategy.id, account.id)
    revoked = actions.unlink(session, None, strategy.id, account.id)
    assert revoked is not None and revoked.key == (account.user_id, strategy.id)
    assert not can_stream(session, account.user_id, strategy.id)
    assert session.get(StrategyAccount, (strategy.id, account.id)) is None


@pytest.mark.parametrize("bad_id", BAD_IDS)
@pytest.mark.parametrize("action", [actions.activate, actions.deactivate, actions.delete_strategy])
def test_strategy_actions_refuse_unknown_ids(
    session: Session, action: Callable[..., object], bad_id: int
) -> None:
    with pytest.raises(NotFound, match=f"no strategy with id {bad_id}"):
        action(session, None, bad_id)


def test_deactivate_and_activate_toggle_the_strategy(
    session: Session, strategy_and_account: tuple[Strategy, Account]
) -> None:
    strategy, _ = strategy_and_account
    assert actions.deactivate(session, None, strategy.id).is_active is False
    session.expire_all()
    assert session.get_one(Strategy, strategy.id).is_active is False
    assert actions.activate(session, None, strategy.id).is_active is True
    assert actions.activate(session, None, strategy.id).is_active is True


def test_delete_strategy_removes_it_with_its_links_and_orders(
    session: Session, strategy_and_account: tuple[Strategy, Account]
) -> None:
    strategy, account = strategy_and_account
    actions.link(session, None, strategy.id, account.id)
    add_order(session, strategy, account, "PAPER-1")
    session.commit()
    actions.delete_strategy(session, None, strategy.id)
    session.expire_all()
    assert session.get(Strategy, strategy.id) is None
    assert session.scalars(select(StrategyAccount)).all() == []
    assert session.scalars(select(Order)).all() == []
    assert session.get(Account, account.id) is not None


DEMO_KEYS = {
    "users": {"id", "username", "password", "api_token"},
    "strategies": {"id", "owner_id", "name", "group_name", "webhook_token", "is_active"},
    "accounts": {"id", "user_id", "name", "exchange", "capital"},
}


def test_demo_builds_a_world_with_a_strategy_shared_by_two_users(session: Session) -> None:
    world = demo.demo(session, None)
    assert set(world) == set(DEMO_KEYS)
    for section, keys in DEMO_KEYS.items():
        assert world[section] and all(set(item) == keys for item in world[section]), section
    assert len({s["group_name"] for s in world["strategies"]}) == len(world["strategies"]) >= 3
    assert any(u["username"] == "alice" for u in world["users"])
    assert all(a["exchange"] == "paper" and Decimal(a["capital"]) > 0 for a in world["accounts"])
    owners_by_strategy = {
        s["id"]: {a.user_id for a in _linked(session, s["id"])} for s in world["strategies"]
    }
    assert any(len(owners) >= 2 for owners in owners_by_strategy.values())


def _linked(session: Session, strategy_id: int) -> list[Account]:
    query = select(Account).join(StrategyAccount).where(StrategyAccount.strategy_id == strategy_id)
    return list(session.scalars(query))


def _ids(world: dict[str, Any], section: str) -> list[int]:
    return [item["id"] for item in world[section]]


def test_demo_twice_reuses_rows_and_only_the_new_logins_work(session: Session) -> None:
    first = demo.demo(session, None)
    second = demo.demo(session, None)
    for section in DEMO_KEYS:
        assert _ids(first, section) == _ids(second, section), section
    assert session.scalar(select(func.count()).select_from(StrategyAccount)) == sum(
        len(_linked(session, sid)) for sid in _ids(second, "strategies")
    )
    for old, new in zip(first["users"], second["users"]):
        assert auth.user_for_api_token(session, old["api_token"]) is None
        holder = auth.user_for_api_token(session, new["api_token"])
        assert holder is not None and holder.id == new["id"]
        assert auth.authenticate(session, new["username"], new["password"]) is not None
    for old, new in zip(first["strategies"], second["strategies"]):
        strategy = session.get_one(Strategy, new["id"])
        assert auth.check_webhook_token(strategy, new["webhook_token"])
        assert not auth.check_webhook_token(strategy, old["webhook_token"])
