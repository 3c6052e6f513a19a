"""Rows become events that pass the bus's own checks, and snapshot rows with the same fields."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from bus import codec
from bus.events import Account as AccountRef
from bus.events import OrderEvent, PositionEvent, from_wire
from store import rows
from store.models import Account, Order, Position
from tests.store.factories import add_account, add_order, add_position, add_strategy, add_user

MOMENT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.fixture
def account(session: Session) -> Account:
    return add_account(session, add_user(session, "dana"), "dana main")


@pytest.fixture
def order(session: Session, account: Account) -> Order:
    strategy = add_strategy(session, add_user(session, "owner"), "btc-trend")
    order = add_order(session, strategy, account, "PAPER-42")
    order.updated_at = MOMENT
    session.commit()
    return order


@pytest.fixture
def position(session: Session, account: Account) -> Position:
    strategy = add_strategy(session, add_user(session, "owner"), "eth-swing")
    position = add_position(session, strategy, account)
    position.updated_at = MOMENT
    session.commit()
    return position


D = Decimal


def _through_the_bus(event: OrderEvent | PositionEvent) -> object:
    wire = codec.unpack_map(codec.pack(event.to_wire()))
    decoded = from_wire(wire)
    assert type(decoded) is type(event)
    return decoded


def test_order_event_carries_the_order_and_survives_the_wire(
    order: Order, account: Account
) -> None:
    event = rows.order_event(order, account, "order_created")
    assert _through_the_bus(event) == event
    assert (event.order_id, event.symbol) == ("PAPER-42", "BTC/USDT")
    assert (event.user_id, event.strategy_id) == (account.user_id, order.strategy_id)
    assert (event.side, event.order_type, event.status) == ("BUY", "LIMIT", "NEW")
    assert (event.quantity, event.price, event.stop_price) == ("0.5", "90000.00", None)
    assert (event.filled_quantity, event.average_price) == ("0", None)
    assert event.account == AccountRef(account_id=account.id, name="dana main", exchange="paper")
    assert event.timestamp == "2026-01-02T03:04:05.678901Z"
    assert event.suppress_toast is False


def test_order_filled_keeps_the_orders_quantity_and_names_its_fill(order: Order, account: Account) -> None:
    event = rows.order_event(order, account, "order_filled", suppress_toast=True, fill_quantity=D("0.2"), fill_price=D("89990.50"))
    assert (event.quantity, event.fill_quantity, event.fill_price) == ("0.5", "0.2", "89990.50")  # full state + the fill
    assert (event.suppress_toast, event.event_type) == (True, "order_filled")
    assert _through_the_bus(event) == event


def test_other_order_events_carry_null_fill_fields(order: Order, account: Account) -> None:
    wire = rows.order_event(order, account, "order_created").to_wire()
    assert (wire["quantity"], wire["fill_quantity"], wire["fill_price"]) == ("0.5", None, None)


def test_order_snapshot_has_the_event_fields_without_kind_event_type_and_the_fill(
    order: Order, account: Account
) -> None:
    wire = rows.order_event(order, account, "order_filled", fill_quantity=D("0.2"), fill_price=D("1.0")).to_wire()
    snapshot = rows.order_snapshot(order, account)
    assert snapshot == {k: v for k, v in wire.items() if k not in ("kind", "event_type", "fill_quantity", "fill_price")}
    assert "kind" not in snapshot and "event_type" not in snapshot and "fill_quantity" not in snapshot


def test_position_event_carries_the_position_and_survives_the_wire(
    position: Position, account: Account
) -> None:
    event = rows.position_event(position, account, "position_updated", D("-1.5"), D("10000"))
    assert _through_the_bus(event) == event
    assert (event.position_id, event.symbol, event.quantity) == (position.id, "ETH/USDT", "-2.0")
    assert (event.entry_price, event.previous_quantity) == ("3000.00", "-1.5")
    assert (event.account_name, event.exchange) == ("dana main", "paper")
    assert event.account.account_id == account.id
    assert event.timestamp == "2026-01-02T03:04:05.678901Z"


def test_position_snapshot_has_the_event_fields_and_no_previous_quantity(
    position: Position, account: Account
) -> None:
    wire = rows.position_event(position, account, "position_created", None, D(10_000)).to_wire()
    snapshot = rows.position_snapshot(position, account, D(10_000))
    assert snapshot == {k: v for k, v in wire.items() if k not in ("kind", "event_type")}
    assert snapshot["previous_quantity"] is None


def test_unflushed_order_gets_the_current_time(account: Account) -> None:
    order = Order(
        order_id="PAPER-1",
        account_id=account.id,
        strategy_id=7,
        user_id=account.user_id,
        symbol="BTC/USDT",
        side="SELL",
        order_type="MARKET",
        quantity=D(1),
        status="FILLED",
        filled_quantity=D(1),
        average_price=D(91_000),
    )
    event = rows.order_event(order, account, "order_filled")
    assert event.timestamp.endswith("Z") and event.quantity == "1"
    assert event.average_price == "91000"
