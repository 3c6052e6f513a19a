"""The order and position handlers in-process, on the demo database: inbox in, rows and outbox events out."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from bus import codec
from bus.events import OrderBatchEvent, OrderEvent, PositionEvent, WireMessage, from_wire
from producers import inbox
from producers.commands import Command, SignalCommand, TickCommand
from producers.orders import OrderHandler
from producers.positions import PositionHandler
from producers.prices import last_fill_price
from producers.relay_window import Row
from producers.signals import OrderSpec
from producers.trading import order_quantity
from store import actions
from store.handoff import Execution, InboxCommand, OutboxEvent
from store.models import MarketPrice, Order, Position
from tests.producers.conftest import World

NEVER = lambda: False  # noqa: E731  # catch up until nothing is left


class Recorder:
    """What each commit handed on: the relay's rows (decoded as the broker would) and the fill wake-ups."""

    def __init__(self) -> None:
        self.events: list[WireMessage] = []
        self.fills: list[int] = []

    def committed(self, rows: list[Row]) -> None:
        self.events.extend(from_wire(codec.unpack_map(row.payload)) for row in rows)

    def take(self) -> list[WireMessage]:
        events, self.events = self.events, []
        return events


@pytest.fixture
def out() -> Recorder:
    return Recorder()


@pytest.fixture
def handler(world: World, out: Recorder) -> OrderHandler:
    return OrderHandler(world.sessions, out.committed, out.fills.extend)


def submit(world: World, handler: OrderHandler, *commands: Command) -> None:
    """Store commands in the inbox, as the webhook or replay would, and let the handler catch up."""
    with world.sessions() as session:
        for command in commands:
            inbox.put(session, command)
        session.commit()
    handler.catch_up(NEVER)


def exact(value: float | None) -> Decimal | None:
    """A literal of these tests as the webhook parses it (a number by its shortest digits)."""
    return None if value is None else Decimal(repr(value))


def spec(
    order_type: str, symbol: str, side: str | None = None, price: float | None = None,
    stop_price: float | None = None, qty_per: float | None = None,
) -> OrderSpec:
    return OrderSpec(order_type, symbol, side, exact(price), exact(stop_price), exact(qty_per))


def tick(symbol: str, price: float, volume: float | None = None) -> TickCommand:
    return TickCommand(symbol, Decimal(repr(price)), exact(volume))


def limit(price: float, side: str = "BUY", qty_per: float = 5.0, symbol: str = "BTC/USDT") -> OrderSpec:
    return spec("LIMIT", symbol, side, price, None, qty_per)


def summary(event: WireMessage) -> list[tuple[str, int, int]]:
    assert isinstance(event, OrderBatchEvent)
    return [(s.order_type, s.created, s.cancelled) for s in event.summaries]


def outcomes(world: World) -> list[tuple[str, str | None, str | None]]:
    with world.sessions() as session:
        query = select(InboxCommand.kind, InboxCommand.outcome, InboxCommand.error).order_by(InboxCommand.id)
        return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]


def count(world: World, model: type[object]) -> int:
    with world.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_quantity_is_qty_per_percent_of_capital_at_the_order_price() -> None:
    D = Decimal
    assert order_quantity("BTC/USDT", D(100_000), D(5), D(90_000)) == D("0.05555555")  # rounded down to the step
    assert order_quantity("BTC/USDT", D(100), D("1e-12"), D(90_000)) is None
    assert order_quantity("BTC/USDT", D("0.1"), D("0.3"), D("0.1")) == D("0.003")  # exact: no 0.30000000000000004
    assert order_quantity("BTC/USDT", D(100), D(5), None) is None


def test_signal_places_one_order_per_linked_account_on_its_owners_key(handler: OrderHandler, out: Recorder, world: World) -> None:
    submit(world, handler, SignalCommand("btc-trend", (limit(90_000.0),), strategy_id=world.strategy_ids["btc-trend"]))
    events = out.take()
    assert [(e.event_type, e.user_id, e.strategy_id, e.quantity, e.suppress_toast) for e in events] == [  # type: ignore[attr-defined]
        ("order_created", world.user_ids["alice"], 1, "0.05555555", False),
        ("order_created", world.user_ids["bob"], 1, "0.02777777", False),
    ]
    with world.sessions() as session:
        rows = session.scalars(select(Order).order_by(Order.id)).all()
        in_outbox = [from_wire(codec.unpack_map(e.payload)) for e in session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))]
    assert [(r.account_id, r.user_id, r.status, r.order_id) for r in rows] == [
        (world.account_ids["alice"], world.user_ids["alice"], "NEW", events[0].order_id),  # type: ignore[attr-defined]
        (world.account_ids["bob"], world.user_ids["bob"], "NEW", events[1].order_id),  # type: ignore[attr-defined]
    ]
    assert in_outbox == events  # committed with the orders, in the order they were made
    assert out.fills == [] and outcomes(world) == [("signal", "done", None)]


def test_every_stored_signal_is_handled_exactly_once_by_any_number_of_catch_ups_and_restarts(
    handler: OrderHandler, out: Recorder, world: World
) -> None:
    submit(world, handler, SignalCommand("sol-scalp", (limit(150.0, symbol="SOL/USDT"),)))
    handler.catch_up(NEVER)
    restarted = OrderHandler(world.sessions, out.committed, out.fills.extend)
    restarted.restore()
    restarted.catch_up(NEVER)
    assert count(world, Order) == 1 and len(out.take()) == 1


@pytest.mark.expect_log("signal refused")
def test_group_name_alone_is_resolved_and_unknown_or_inactive_groups_are_recorded_rejected(
    handler: OrderHandler, out: Recorder, world: World
) -> None:
    submit(world, handler, SignalCommand("sol-scalp", (limit(150.0, symbol="SOL/USDT"),)))
    assert [e.user_id for e in out.take()] == [world.user_ids["bob"]]  # type: ignore[attr-defined]
    submit(world, handler, SignalCommand("no-such-group", (limit(1.0),)))
    with world.sessions() as session:
        actions.deactivate(session, None, world.strategy_ids["sol-scalp"])
    submit(world, handler, SignalCommand("sol-scalp", (limit(150.0, symbol="SOL/USDT"),)))
    assert out.take() == []
    assert outcomes(world) == [
        ("signal", "done", None),
        ("signal", "rejected", "strategy 'no-such-group' is unknown"),
        ("signal", "rejected", "strategy 'sol-scalp' is inactive"),
    ]


@pytest.mark.expect_log("failed, recorded and skipped")
def test_a_poison_command_is_recorded_failed_with_its_error_and_does_not_block_the_next(
    handler: OrderHandler, out: Recorder, world: World
) -> None:
    with world.sessions() as session:
        session.add(InboxCommand(kind="signal", body='{"group_name": "sol-scalp", "orders": "all of them"}'))
        session.add(InboxCommand(kind="tick", body="[1, 2]"))
        session.commit()
    submit(world, handler, SignalCommand("sol-scalp", (limit(150.0, symbol="SOL/USDT"),)))
    handler.catch_up(NEVER)  # never retried
    (kind, outcome, error), (_, outcome2, error2), third = outcomes(world)
    assert (kind, outcome) == ("signal", "failed") and error is not None and error.startswith("InvalidCommand: orders")
    assert outcome2 == "failed" and error2 == "InvalidCommand: inbox body is not a map"
    assert third == ("signal", "done", None) and len(out.take()) == 1
    assert handler.failed == 2


def test_batch_suppresses_toasts_and_ends_with_one_summary_per_key(handler: OrderHandler, out: Recorder, world: World) -> None:
    submit(world, handler, SignalCommand("btc-trend", (limit(80_000.0),)))
    out.take()
    batch = (
        spec("STOP_MARKET", "BTC/USDT", "SELL", None, 70_000.0, 2.0),
        spec("CANCEL_ALL_ORDER", "BTC/USDT"),
        spec("MARKET", "BTC/USDT", "BUY", 90_000.0, None, 1.0),
    )
    submit(world, handler, SignalCommand("btc-trend", batch, is_batch=True))
    events = out.take()
    orders, summaries = events[:-2], events[-2:]
    assert all(isinstance(e, OrderEvent) and e.suppress_toast for e in orders)
    alice = [e.event_type for e in orders if e.user_id == world.user_ids["alice"]]  # type: ignore[attr-defined]
    assert alice == ["order_created", "order_cancelled", "order_cancelled", "order_filled"]
    assert [(e.user_id, summary(e)) for e in summaries] == [  # type: ignore[attr-defined]
        (uid, [("MARKET", 1, 0), ("LIMIT", 0, 1), ("STOP_MARKET", 1, 1)]) for uid in (world.user_ids["alice"], world.user_ids["bob"])
    ]
    with world.sessions() as session:
        executions = session.scalars(select(Execution).order_by(Execution.id)).all()
    assert [(e.side, e.price, e.id) for e in executions] == [("BUY", 90_000.0, fill_id) for fill_id in out.fills]


def test_batch_that_changes_nothing_sends_no_summary(handler: OrderHandler, out: Recorder, world: World) -> None:
    submit(world, handler, SignalCommand("btc-trend", (spec("CANCEL_ALL_ORDER", "BTC/USDT"),), is_batch=True))
    assert out.take() == []


def test_ticks_fill_resting_orders_partially_then_fully_writing_executions(handler: OrderHandler, out: Recorder, world: World) -> None:
    submit(world, handler, SignalCommand("sol-scalp", (limit(100.0, symbol="SOL/USDT", qty_per=1.0),)))  # bob: 5 SOL
    out.take()
    submit(world, handler, tick("SOL/USDT", 101.0, 10.0), tick("SOL/USDT", 99.0, 2.0), tick("SOL/USDT", 98.0, 10.0))
    assert [(e.event_type, e.status, e.quantity, e.filled_quantity, e.fill_quantity, e.fill_price) for e in out.take()] == [  # type: ignore[attr-defined]
        ("order_updated", "PARTIALLY_FILLED", "5.00000000", "2.00000000", None, None),
        ("order_filled", "PARTIALLY_FILLED", "5.00000000", "2.00000000", "2.00000000", "100.00"),
        ("order_filled", "FILLED", "5.00000000", "5.00000000", "3.00000000", "100.00"),
    ]
    with world.sessions() as session:
        (row,) = session.scalars(select(Order)).all()
        assert (row.status, row.filled_quantity, row.average_price) == ("FILLED", 5.0, 100.0)
        fills = session.scalars(select(Execution).order_by(Execution.id)).all()
        assert [(f.order_id, f.quantity, f.price, f.user_id, f.applied_at) for f in fills] == [
            (row.id, 2.0, 100.0, world.user_ids["bob"], None), (row.id, 3.0, 100.0, world.user_ids["bob"], None)
        ]
        assert session.get(MarketPrice, "SOL/USDT").price == 98.0  # type: ignore[union-attr]


def test_signals_and_ticks_keep_one_arrival_order(handler: OrderHandler, out: Recorder, world: World) -> None:
    resting = SignalCommand("sol-scalp", (limit(100.0, symbol="SOL/USDT", qty_per=1.0),))
    submit(world, handler, tick("SOL/USDT", 99.0), resting)  # the tick came first: the order rests
    assert [e.event_type for e in out.take()] == ["order_created"]  # type: ignore[attr-defined]
    submit(world, handler, resting, tick("SOL/USDT", 99.0))  # the tick after: it fills both
    assert [e.event_type for e in out.take()] == ["order_created", "order_filled", "order_filled"]  # type: ignore[attr-defined]


@pytest.mark.expect_log('rejected: no price known')
def test_market_without_any_price_is_rejected_and_reported_cancelled(handler: OrderHandler, out: Recorder, world: World) -> None:
    submit(world, handler, SignalCommand("sol-scalp", (spec("MARKET", "SOL/USDT", "BUY", None, None, 1.0),)))
    (event,) = out.take()
    assert (event.event_type, event.status) == ("order_cancelled", "REJECTED")  # type: ignore[attr-defined]
    submit(world, handler, tick("SOL/USDT", 50.0), SignalCommand("sol-scalp", (spec("MARKET", "SOL/USDT", "BUY", None, None, 1.0),)))
    (filled,) = out.take()
    assert (filled.event_type, filled.average_price, filled.quantity, filled.fill_quantity) == ("order_filled", "50.0000000000", "10.00000000", "10.00000000")  # type: ignore[attr-defined]
    assert outcomes(world)[0] == ("signal", "done", None)  # its outcome is its (rejected) order


def test_without_a_tick_a_market_order_takes_the_last_fills_price_on_the_step_not_an_average(world: World, out: Recorder) -> None:
    first = OrderHandler(world.sessions, out.committed, out.fills.extend)
    submit(world, first, SignalCommand("sol-scalp", (limit(100.0, symbol="SOL/USDT", qty_per=1.0),)), tick("SOL/USDT", 99.0))
    with world.sessions() as session:  # as a database whose ticks were never recorded, with an order's long average
        session.query(MarketPrice).delete()
        session.scalars(select(Order)).one().average_price = Decimal("100.0043478261")
        session.commit()
        assert last_fill_price(session, "SOL/USDT") == Decimal("100.00")  # the newest execution's
    out.take()
    restarted = OrderHandler(world.sessions, out.committed, out.fills.extend)
    restarted.restore()
    submit(world, restarted, SignalCommand("sol-scalp", (spec("MARKET", "SOL/USDT", "BUY", None, None, 1.0),)))
    (filled,) = out.take()
    assert (filled.event_type, filled.fill_price) == ("order_filled", "100.00")  # type: ignore[attr-defined]
    with world.sessions() as session:  # an older release's database: fills only as orders' averages
        session.query(Execution).delete()
        for order in session.scalars(select(Order)):
            order.average_price = Decimal("100.0043478261")
        session.commit()
        assert last_fill_price(session, "SOL/USDT") == Decimal("100.00")  # the newest average, on the step


def test_a_restarted_handler_restores_resting_orders_and_last_prices_from_the_database(world: World, out: Recorder) -> None:
    first = OrderHandler(world.sessions, out.committed, out.fills.extend)
    submit(world, first, SignalCommand("sol-scalp", (spec("STOP_MARKET", "SOL/USDT", "BUY", None, 110.0, 1.0),)),
           tick("ETH/USDT", 3000.0))
    out.take()
    restarted = OrderHandler(world.sessions, out.committed, out.fills.extend)
    assert restarted.restore() == 1 and restarted.exchange.last_prices == {"ETH/USDT": 3000.0}
    submit(world, restarted, tick("SOL/USDT", 111.0))
    assert [e.event_type for e in out.take()] == ["order_filled"]  # type: ignore[attr-defined]


def test_a_handler_applies_nothing_before_its_exchange_is_restored_from_the_database(world: World, out: Recorder) -> None:
    first = OrderHandler(world.sessions, out.committed, out.fills.extend)
    submit(world, first, SignalCommand("sol-scalp", (limit(150.0, symbol="SOL/USDT"),)))
    out.take()
    second = OrderHandler(world.sessions, out.committed, out.fills.extend)  # restore() never called
    assert second.stale
    submit(world, second, tick("SOL/USDT", 140.0))
    assert not second.stale and [e.event_type for e in out.take()] == ["order_filled"]  # type: ignore[attr-defined]
    assert outcomes(world) == [("signal", "done", None), ("tick", "done", None)]


def fill_orders(world: World, out: Recorder, *steps: tuple[str, float, float]) -> list[int]:
    """Bob's MARKET orders in sol-scalp, through the order handler: their executions' ids."""
    handler = OrderHandler(world.sessions, out.committed, out.fills.extend)
    for side, qty_per, price in steps:
        submit(world, handler, SignalCommand("sol-scalp", (spec("MARKET", "SOL/USDT", side, price, None, qty_per),)))
    out.take()
    fills, out.fills = out.fills, []
    return fills


def test_fills_open_add_reduce_and_close_a_position_with_events(world: World, out: Recorder) -> None:
    # bob's 50,000: 1% at 100 = 5 SOL; 1% at 250 = 2; 0.5% at 250 = 1; 3% at 250 = 6
    fill_ids = fill_orders(world, out, ("BUY", 1.0, 100.0), ("BUY", 1.0, 250.0), ("SELL", 0.5, 250.0), ("SELL", 3.0, 250.0))
    positions = PositionHandler(world.sessions, out.committed)
    positions.catch_up(NEVER)
    events = out.take()
    assert all(isinstance(e, PositionEvent) for e in events)
    assert [(e.event_type, e.quantity, e.previous_quantity) for e in events] == [  # type: ignore[attr-defined]
        ("position_created", "5.00000000", "0"), ("position_updated", "7.00000000", "5.00000000"),
        ("position_updated", "6.00000000", "7.00000000"), ("position_closed", "0", "6.00000000"),
    ]
    assert len({e.position_id for e in events}) == 1 and len(fill_ids) == 4  # type: ignore[attr-defined]
    with world.sessions() as session:
        (row,) = session.scalars(select(Position)).all()
        # 7 * 250 - (5 * 100 + 2 * 250) = 750, with the average cost 1,000 / 7 kept to 1e-10 (the price step and
        # AVERAGE_EXTRA_PLACES): 142.8571428571 a SOL, so the 7 sold make 7 x 0.0000000000429 more.
        assert row.realized_pnl == Decimal("750.0000000003")
        assert all(e.applied_at is not None for e in session.scalars(select(Execution)))


def test_a_fill_is_applied_once_whatever_wakes_the_handler_and_a_gap_is_read_from_the_table(world: World, out: Recorder) -> None:
    first, second, third = fill_orders(world, out, ("BUY", 1.0, 100.0), ("BUY", 1.0, 100.0), ("BUY", 1.0, 100.0))
    positions = PositionHandler(world.sessions, out.committed)
    assert positions.on_message([b"fill", codec.pack({"fill_id": first})]) is False  # the next one: the fast path
    assert positions.on_message([b"fill", codec.pack({"fill_id": first})]) is False  # again: nothing
    assert positions.on_message([b"fill", codec.pack({"fill_id": third})]) is True  # a gap: catch up
    positions.catch_up(NEVER)
    assert positions.on_message([b"fill", codec.pack({"fill_id": second})]) is False
    PositionHandler(world.sessions, out.committed).catch_up(NEVER)  # a restart applies nothing again
    assert [e.quantity for e in out.take()] == ["5.00000000", "10.00000000", "15.00000000"]  # type: ignore[attr-defined]
    assert positions.on_message([b"wake", b""]) is True and positions.on_message([b"fill", b"\xc1"]) is True


@pytest.mark.expect_log("failed, recorded and skipped")
def test_a_fill_that_raises_is_recorded_and_the_next_one_is_applied(world: World, out: Recorder) -> None:
    bad, good = fill_orders(world, out, ("BUY", 1.0, 100.0), ("BUY", 1.0, 100.0))
    with world.sessions() as session:
        session.get(Execution, bad).account_id = 999_999  # type: ignore[union-attr]  # no such account: applying raises
        session.commit()
    positions = PositionHandler(world.sessions, out.committed)
    positions.catch_up(NEVER)
    positions.catch_up(NEVER)
    with world.sessions() as session:
        bad_row, good_row = session.get(Execution, bad), session.get(Execution, good)
        assert bad_row is not None and bad_row.error is not None and bad_row.applied_at is not None
        assert good_row is not None and good_row.error is None and good_row.applied_at is not None
    assert [e.quantity for e in out.take()] == ["5.00000000"] and positions.failed == 1  # type: ignore[attr-defined]
