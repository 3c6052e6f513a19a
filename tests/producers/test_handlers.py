"""The order and position handlers in-process, on the demo database, publishing into lists."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import zmq
from sqlalchemy import select

from bus import codec
from bus.events import OrderBatchEvent, OrderEvent, PositionEvent, WireMessage, from_wire
from producers.commands import SIGNAL, TICK, FillCommand, SignalCommand, TickCommand
from producers.orders import OrderHandler, order_quantity
from producers.positions import PositionHandler
from producers.pull_loop import CommandLoop
from producers.signals import OrderSpec
from store import actions
from store.models import Order, Position
from tests.producers.conftest import World
from tests.waiting import wait_until


class Recorder:
    """The handler's outputs: events as the broker would get them, and fills."""

    def __init__(self) -> None:
        self.events: list[WireMessage] = []
        self.fills: list[FillCommand] = []

    def publish(self, event: WireMessage) -> None:
        self.events.append(from_wire(event.to_wire()))  # only what survives the wire counts

    def take(self) -> list[WireMessage]:
        events, self.events = self.events, []
        return events


@pytest.fixture
def out() -> Recorder:
    return Recorder()


@pytest.fixture
def handler(world: World, out: Recorder) -> OrderHandler:
    return OrderHandler(world.sessions, out.publish, out.fills.append)


def limit(price: float, side: str = "BUY", qty_per: float = 5.0, symbol: str = "BTC/USDT") -> OrderSpec:
    return OrderSpec("LIMIT", symbol, side, price, None, qty_per)


def summary(event: WireMessage) -> list[tuple[str, int, int]]:
    assert isinstance(event, OrderBatchEvent)
    return [(s.order_type, s.created, s.cancelled) for s in event.summaries]


def test_quantity_is_qty_per_percent_of_capital_at_the_order_price() -> None:
    assert order_quantity(100_000.0, 5.0, 90_000.0) == 0.05555556
    assert order_quantity(100.0, 1e-12, 90_000.0) is None
    assert order_quantity(1e300, 1e300, 1e-300) is None
    assert order_quantity(100.0, 5.0, None) is None


def test_signal_places_one_order_per_linked_account_on_its_owners_key(handler: OrderHandler, out: Recorder, world: World) -> None:
    handler.handle(SignalCommand("btc-trend", (limit(90_000.0),), strategy_id=world.strategy_ids["btc-trend"]))
    events = out.take()
    assert [(e.event_type, e.user_id, e.strategy_id, e.quantity, e.suppress_toast) for e in events] == [  # type: ignore[attr-defined]
        ("order_created", world.user_ids["alice"], 1, 0.05555556, False),
        ("order_created", world.user_ids["bob"], 1, 0.02777778, False),
    ]
    with world.sessions() as session:
        rows = session.scalars(select(Order).order_by(Order.id)).all()
    assert [(r.account_id, r.user_id, r.status, r.order_id) for r in rows] == [
        (world.account_ids["alice"], world.user_ids["alice"], "NEW", events[0].order_id),  # type: ignore[attr-defined]
        (world.account_ids["bob"], world.user_ids["bob"], "NEW", events[1].order_id),  # type: ignore[attr-defined]
    ]
    assert out.fills == []


@pytest.mark.expect_log('ignored')
def test_group_name_alone_is_resolved_and_unknown_or_inactive_groups_are_ignored(handler: OrderHandler, out: Recorder, world: World) -> None:
    handler.handle(SignalCommand("sol-scalp", (limit(150.0, symbol="SOL/USDT"),)))
    assert [e.user_id for e in out.take()] == [world.user_ids["bob"]]  # type: ignore[attr-defined]
    handler.handle(SignalCommand("no-such-group", (limit(1.0),)))
    with world.sessions() as session:
        actions.deactivate(session, None, world.strategy_ids["sol-scalp"])
    handler.handle(SignalCommand("sol-scalp", (limit(150.0, symbol="SOL/USDT"),)))
    assert out.take() == []


def test_batch_suppresses_toasts_and_ends_with_one_summary_per_key(handler: OrderHandler, out: Recorder, world: World) -> None:
    handler.handle(SignalCommand("btc-trend", (limit(80_000.0),)))
    out.take()
    batch = (
        OrderSpec("STOP_MARKET", "BTC/USDT", "SELL", None, 70_000.0, 2.0),
        OrderSpec("CANCEL_ALL_ORDER", "BTC/USDT"),
        OrderSpec("MARKET", "BTC/USDT", "BUY", 90_000.0, None, 1.0),
    )
    handler.handle(SignalCommand("btc-trend", batch, is_batch=True))
    events = out.take()
    orders, summaries = events[:-2], events[-2:]
    assert all(isinstance(e, OrderEvent) and e.suppress_toast for e in orders)
    alice = [e.event_type for e in orders if e.user_id == world.user_ids["alice"]]  # type: ignore[attr-defined]
    assert alice == ["order_created", "order_cancelled", "order_cancelled", "order_filled"]
    assert [(e.user_id, summary(e)) for e in summaries] == [  # type: ignore[attr-defined]
        (uid, [("MARKET", 1, 0), ("LIMIT", 0, 1), ("STOP_MARKET", 1, 1)]) for uid in (world.user_ids["alice"], world.user_ids["bob"])
    ]
    assert [(f.side, f.price) for f in out.fills] == [("BUY", 90_000.0)] * 2


def test_batch_that_changes_nothing_sends_no_summary(handler: OrderHandler, out: Recorder) -> None:
    handler.handle(SignalCommand("btc-trend", (OrderSpec("CANCEL_ALL_ORDER", "BTC/USDT"),), is_batch=True))
    assert out.take() == []


def test_ticks_fill_resting_orders_partially_then_fully_and_push_fills(handler: OrderHandler, out: Recorder, world: World) -> None:
    handler.handle(SignalCommand("sol-scalp", (limit(100.0, symbol="SOL/USDT", qty_per=1.0),)))  # bob: 5 SOL
    out.take()
    handler.handle(TickCommand("SOL/USDT", 101.0, 10.0))
    handler.handle(TickCommand("SOL/USDT", 99.0, 2.0))
    handler.handle(TickCommand("SOL/USDT", 98.0, 10.0))
    assert [(e.event_type, e.status, e.quantity, e.filled_quantity) for e in out.take()] == [  # type: ignore[attr-defined]
        ("order_updated", "PARTIALLY_FILLED", 5.0, 2.0),
        ("order_filled", "PARTIALLY_FILLED", 2.0, 2.0),
        ("order_filled", "FILLED", 3.0, 5.0),
    ]
    assert [(f.quantity, f.price, f.user_id) for f in out.fills] == [(2.0, 100.0, world.user_ids["bob"]), (3.0, 100.0, world.user_ids["bob"])]
    with world.sessions() as session:
        (row,) = session.scalars(select(Order)).all()
        assert (row.status, row.filled_quantity, row.average_price) == ("FILLED", 5.0, 100.0)


@pytest.mark.expect_log('rejected: no price known')
def test_market_without_any_price_is_rejected_and_reported_cancelled(handler: OrderHandler, out: Recorder) -> None:
    handler.handle(SignalCommand("sol-scalp", (OrderSpec("MARKET", "SOL/USDT", "BUY", None, None, 1.0),)))
    (event,) = out.take()
    assert (event.event_type, event.status) == ("order_cancelled", "REJECTED")  # type: ignore[attr-defined]
    handler.handle(TickCommand("SOL/USDT", 50.0))
    handler.handle(SignalCommand("sol-scalp", (OrderSpec("MARKET", "SOL/USDT", "BUY", None, None, 1.0),)))
    (filled,) = out.take()
    assert (filled.event_type, filled.average_price, filled.quantity) == ("order_filled", 50.0, 10.0)  # type: ignore[attr-defined]


def test_a_restarted_handler_restores_resting_orders_from_the_database(world: World, out: Recorder) -> None:
    OrderHandler(world.sessions, out.publish, out.fills.append).handle(
        SignalCommand("sol-scalp", (OrderSpec("STOP_MARKET", "SOL/USDT", "BUY", None, 110.0, 1.0),))
    )
    out.take()
    restarted = OrderHandler(world.sessions, out.publish, out.fills.append)
    assert restarted.restore() == 1
    restarted.handle(TickCommand("SOL/USDT", 111.0))
    assert [e.event_type for e in out.take()] == ["order_filled"]


def test_fills_open_add_reduce_and_close_a_position_with_events(world: World, out: Recorder) -> None:
    positions = PositionHandler(world.sessions, out.publish)
    alice, account = world.user_ids["alice"], world.account_ids["alice"]
    for side, quantity, price in (("BUY", 2.0, 100.0), ("BUY", 2.0, 200.0), ("SELL", 1.0, 300.0), ("SELL", 3.0, 50.0)):
        positions.handle(FillCommand("o", account, 1, alice, "BTC/USDT", side, quantity, price))
    events = out.take()
    assert all(isinstance(e, PositionEvent) for e in events)
    assert [(e.event_type, e.quantity, e.previous_quantity, e.entry_price) for e in events] == [  # type: ignore[attr-defined]
        ("position_created", 2.0, 0.0, 100.0),
        ("position_updated", 4.0, 2.0, 150.0),
        ("position_updated", 3.0, 4.0, 150.0),
        ("position_closed", 0.0, 3.0, None),
    ]
    assert len({e.position_id for e in events}) == 1  # type: ignore[attr-defined]
    with world.sessions() as session:
        (row,) = session.scalars(select(Position)).all()
        assert row.realized_pnl == pytest.approx(150.0 - 300.0)


@pytest.mark.expect_log('command skipped')
def test_command_loop_logs_and_skips_a_poison_message(zctx: zmq.Context[Any], caplog: pytest.LogCaptureFixture) -> None:
    handled: list[Any] = []
    loop = CommandLoop("tcp://127.0.0.1:*", handled.append, context=zctx)
    thread = threading.Thread(target=loop.run)
    thread.start()
    push = zctx.socket(zmq.PUSH)
    push.connect(loop.endpoint)
    push.send_multipart([TICK, b"\xc1 not msgpack"])
    push.send_multipart([SIGNAL])
    push.send_multipart([TICK, codec.pack(TickCommand("BTC/USDT", 1.0).to_wire())])
    wait_until(lambda: handled, what="the good command after two poison ones")
    loop.stop()
    thread.join(timeout=5)
    push.close()
    assert handled == [TickCommand("BTC/USDT", 1.0)] and (loop.handled, loop.skipped) == (1, 2)
    assert caplog.text.count("command skipped") == 2
