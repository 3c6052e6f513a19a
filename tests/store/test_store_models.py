"""The schema: UTC times on every backend, cascades, constraints, idempotent creation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from bus import decimals
from store.db import init_db, make_engine
from store.models import Account, Order, Position, Signal, Strategy, StrategyAccount, User
from tests.store.factories import (
    add_account,
    add_link,
    add_order,
    add_position,
    add_strategy,
    add_user,
)


def test_timestamps_round_trip_as_aware_utc(session: Session) -> None:
    user = add_user(session, "dana")
    moment = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5)))
    user.created_at = moment
    session.commit()
    session.expire_all()
    stored = session.scalars(select(User.created_at)).one()
    assert stored == moment
    assert stored.utcoffset() == timedelta(0)
    assert stored.hour == 7 and stored.microsecond == 123456


def test_timestamps_default_to_now_in_utc(session: Session) -> None:
    before = datetime.now(UTC)
    order = add_order(session, *_strategy_and_account(session), "X-1")
    session.commit()
    session.expire_all()
    assert before <= order.created_at <= datetime.now(UTC)
    assert order.updated_at.tzinfo is not None


def test_naive_datetimes_are_refused(session: Session) -> None:
    user = add_user(session, "dana")
    user.created_at = datetime(2026, 3, 1, 12, 0)
    with pytest.raises(StatementError, match="timezone-aware"):
        session.commit()


def _strategy_and_account(session: Session) -> tuple[Strategy, Account]:
    owner = add_user(session, "owner")
    strategy = add_strategy(session, owner, "btc-trend")
    account = add_account(session, owner, "main")
    add_link(session, strategy, account)
    return strategy, account


def test_deleting_a_strategy_deletes_its_links_signals_orders_and_positions(
    session: Session,
) -> None:
    strategy, account = _strategy_and_account(session)
    session.add(Signal(strategy_id=strategy.id, client_id="a", payload="{}"))
    add_order(session, strategy, account, "X-1")
    add_position(session, strategy, account)
    session.commit()
    session.delete(strategy)
    session.commit()
    for model in (StrategyAccount, Signal, Order, Position):
        assert session.scalars(select(model)).all() == [], model.__name__


def test_deleting_a_signal_keeps_its_orders(session: Session) -> None:
    strategy, account = _strategy_and_account(session)
    signal = Signal(strategy_id=strategy.id, payload="{}")
    session.add(signal)
    session.flush()
    order = add_order(session, strategy, account, "X-1")
    order.signal_id = signal.id
    session.commit()
    session.delete(signal)
    session.commit()
    session.expire_all()
    assert session.get_one(Order, order.id).signal_id is None


def test_signal_client_id_is_unique_per_strategy_but_may_be_absent(session: Session) -> None:
    strategy, _ = _strategy_and_account(session)
    session.add_all(Signal(strategy_id=strategy.id, payload="{}") for _ in range(2))
    session.add(Signal(strategy_id=strategy.id, client_id="sig-1", payload="{}"))
    session.commit()
    session.add(Signal(strategy_id=strategy.id, client_id="sig-1", payload="{}"))
    with pytest.raises(IntegrityError):
        session.commit()


@pytest.mark.parametrize(
    ("column", "value"), [("side", "buy"), ("order_type", "OCO"), ("status", "DONE")]
)
def test_orders_refuse_values_outside_the_contract(
    session: Session, column: str, value: str
) -> None:
    order = add_order(session, *_strategy_and_account(session), "X-1")
    setattr(order, column, value)
    with pytest.raises(IntegrityError):
        session.commit()


def test_one_position_per_account_strategy_and_symbol(session: Session) -> None:
    strategy, account = _strategy_and_account(session)
    add_position(session, strategy, account)
    with pytest.raises(IntegrityError):
        add_position(session, strategy, account)


def test_init_db_is_idempotent_and_creates_every_table(engine: Engine) -> None:
    init_db(engine)
    tables = set(inspect(engine).get_table_names())
    assert tables >= {
        *("users", "accounts", "strategies", "strategy_accounts"),
        *("signals", "orders", "positions"),
    }


def test_sqlite_engine_sets_its_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with engine.connect() as connection:
            pragmas = {
                name: connection.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("foreign_keys", "journal_mode", "busy_timeout")
            }
        assert pragmas == {"foreign_keys": 1, "journal_mode": "wal", "busy_timeout": 5000}
    finally:
        engine.dispose()


@pytest.mark.parametrize(("first", "then"), [("0", "0.0000000000"), ("90000.00", "90000.0000000000"), ("1.50", "1.5")])
def test_a_money_column_keeps_a_new_value_written_with_other_trailing_zeros(session: Session, first: str, then: str) -> None:
    # Equal Decimals are not a change to SQLAlchemy's ==: a position opened at unrealized_pnl 0 and marked
    # at 0E-10 kept '0' while its event said '0.0000000000', so the snapshot row's text differed (CONTRACT §4).
    position = add_position(session, *_strategy_and_account(session))
    position.unrealized_pnl = Decimal(first)
    session.commit()
    position.unrealized_pnl = Decimal(then)
    session.commit()
    session.expire_all()
    assert decimals.text(session.scalars(select(Position.unrealized_pnl)).one()) == then
