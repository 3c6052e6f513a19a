"""The database going away under the order and position handlers while they commit: no fill is lost.

The handler runs in-process on the demo data in PostgreSQL, reached through a
TCP relay (tests/relay.py) that the test cuts at the very moment the handler's
connection commits (SQLAlchemy's `commit` connection event, just before the
COMMIT is sent): the transaction is lost with its connection, and with the
relay cut the handler cannot reach the database to rebuild its exchange either.
Once the relay is back, the rows are handled again against an exchange rebuilt
from the database, so every order that should fill is FILLED with its
execution, and a fill whose position change was lost is applied once. A COMMIT
the database carries out whose answer is lost (the relay holding replies, then
cut) must still have its outbox rows sent (the pace of a relay's retries while it is down:
test_relay_outage_pacing.py). SQLite is a local file that does not go away like this, so this runs
against PostgreSQL only (TRADESTREAM_TEST_DATABASE_URL).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import zmq
from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bus.protocol import ACK, REJECT
from producers import inbox
from producers.commands import Command, SignalCommand
from producers.errors import TRANSIENT
from producers.orders import OrderHandler
from producers.positions import PositionHandler
from producers.pull_loop import ProducerLoop
from producers.relay import Relay as OutboxRelay
from store.db import init_db, make_engine, make_session_factory
from store.demo import demo as demo_world
from store.handoff import Execution, InboxCommand, OutboxEvent
from store.models import Order, Position
from tests.conftest import POSTGRES_URL, _postgres_schema_url
from tests.producers.conftest import World, world_of
from tests.producers.test_handlers import NEVER, Recorder, limit, outcomes, spec, submit, tick
from tests.producers.test_relay import CALM, StandInBroker, commit_events, make_relay, sent_marks, summary
from tests.relay import Relay
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES_URL, reason="needs PostgreSQL (TRADESTREAM_TEST_DATABASE_URL): a SQLite file cannot become unreachable"),
]


@pytest.fixture
def relayed() -> Iterator[tuple[World, Relay]]:
    """The demo world in a fresh PostgreSQL schema, its engine connecting through a relay; the relay."""
    for url in _postgres_schema_url(POSTGRES_URL):
        engine = make_engine(url)
        init_db(engine)
        with make_session_factory(engine)() as session:
            demo: dict[str, Any] = demo_world(session, None)
        engine.dispose()
        parsed = make_url(url)
        relay = Relay((parsed.host or "127.0.0.1", parsed.port or 5432))
        world = world_of(parsed.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False), demo)
        try:
            yield world, relay
        finally:
            world.engine.dispose()
            relay.close()


def store(world: World, *commands: Command) -> None:
    """Store commands in the inbox, as the webhook or replay would."""
    store_with(world.sessions, *commands)


def store_with(sessions: sessionmaker[Session], *commands: Command) -> None:
    with sessions() as session:
        for command in commands:
            inbox.put(session, command)
        session.commit()


def cut_at_next_commit(world: World, relay: Relay) -> None:
    """Cut the relay when the next transaction of the world's engine is about to be committed."""
    event.listen(world.engine, "commit", lambda connection: relay.cut(), once=True)


def orders_and_fills(world: World) -> tuple[list[tuple[str, str, bool]], list[int]]:
    """Each order's status, whether all of it is filled; the ids of the orders each execution fills."""
    with world.sessions() as session:
        orders = session.scalars(select(Order).order_by(Order.id)).all()
        filled = [(o.order_id, o.status, o.filled_quantity == o.quantity) for o in orders]
        executions = list(session.scalars(select(Execution.order_id).order_by(Execution.id)))
        return filled, executions


def restored_handler(world: World) -> tuple[Recorder, OrderHandler]:
    """An order handler on the world, its exchange restored from the database, and what it emits."""
    out = Recorder()
    handler = OrderHandler(world.sessions, out.committed, out.fills.extend)
    handler.restore()
    return out, handler


def assert_both_filled(orders: list[tuple[str, str, bool]]) -> None:
    """The two accounts' orders of the signal are FILLED, each in full."""
    assert [(status, whole) for _, status, whole in orders] == [("FILLED", True), ("FILLED", True)]



def pump_refused(outbox_relay: OutboxRelay) -> bool:
    """One pump of the relay: True when the database refused what it wrote or read."""
    try:
        outbox_relay.pump()
    except TRANSIENT:
        return True
    return False

def test_the_connection_lost_in_the_commit_of_a_tick_that_fills_resting_orders_then_back_the_fills_exist(
    relayed: tuple[World, Relay],
) -> None:
    world, relay = relayed
    out, handler = restored_handler(world)
    submit(world, handler, SignalCommand("btc-trend", (limit(90_000.0),)))  # alice's and bob's accounts
    assert len(handler.exchange.open_orders()) == 2
    store(world, tick("BTC/USDT", 89_000.0))
    cut_at_next_commit(world, relay)
    with pytest.raises(TRANSIENT):
        handler.catch_up(NEVER)  # the tick's handling: its commit is lost
    with pytest.raises(TRANSIENT):
        handler.catch_up(NEVER)  # still down: the row waits
    relay.restore()
    handler.catch_up(NEVER)
    orders, executions = orders_and_fills(world)
    assert_both_filled(orders)
    with world.sessions() as session:
        ids = {row.order_id: row.id for row in session.scalars(select(Order))}
    assert sorted(executions) == sorted(ids.values())
    assert outcomes(world) == [("signal", "done", None), ("tick", "done", None)]
    assert handler.exchange.open_orders() == [] and len(out.fills) == 2 and handler.failed == 0


def test_the_connection_lost_in_the_commit_of_a_signal_then_back_a_crossing_tick_fills_its_orders_only(
    relayed: tuple[World, Relay],
) -> None:
    world, relay = relayed
    _, handler = restored_handler(world)
    store(world, SignalCommand("btc-trend", (limit(90_000.0),)))
    cut_at_next_commit(world, relay)
    with pytest.raises(TRANSIENT):
        handler.catch_up(NEVER)  # the signal's handling: its commit is lost
    relay.restore()
    handler.catch_up(NEVER)  # the signal again: its two orders, once
    assert len(handler.exchange.open_orders()) == 2
    submit(world, handler, tick("BTC/USDT", 89_000.0))
    orders, executions = orders_and_fills(world)
    assert_both_filled(orders)
    assert len(executions) == 2 and len(set(executions)) == 2
    assert outcomes(world) == [("signal", "done", None), ("tick", "done", None)]
    assert handler.exchange.open_orders() == [] and handler.failed == 0


def test_the_connection_lost_in_the_commit_of_a_fill_then_back_the_position_holds_it_once(
    relayed: tuple[World, Relay],
) -> None:
    world, relay = relayed
    out = Recorder()
    orders = OrderHandler(world.sessions, out.committed, out.fills.extend)
    submit(world, orders, SignalCommand("sol-scalp", (spec("MARKET", "SOL/USDT", "BUY", 100.0, None, 1.0),)))
    positions = PositionHandler(world.sessions, out.committed)
    cut_at_next_commit(world, relay)
    with pytest.raises(TRANSIENT):
        positions.catch_up(NEVER)  # the fill's commit is lost
    relay.restore()
    positions.catch_up(NEVER)
    with world.sessions() as session:
        (position,) = session.scalars(select(Position)).all()
        assert (position.quantity, position.mark_price) == (Decimal("5.00000000"), Decimal("100.0"))
        assert all(e.applied_at is not None and e.error is None for e in session.scalars(select(Execution)))
    assert positions.applied == 1 and positions.failed == 0


@pytest.mark.expect_log("rejected by the broker")
def test_a_rejection_answered_while_the_database_is_down_is_recorded_once_it_is_back(relayed: tuple[World, Relay]) -> None:
    world, relay = relayed
    ctx: zmq.Context[Any] = zmq.Context()
    broker = StandInBroker(ctx)
    outbox_relay = make_relay(world, broker.endpoint, ctx)
    try:
        rows = commit_events(world, *(summary(world.user_ids["alice"], n) for n in range(1, 3)))
        outbox_relay.offer(rows)
        broker.receive(outbox_relay, 2)
        relay.cut()
        broker.answer(REJECT, outbox_relay.stream, rows[0].id, b"summaries: bad")
        broker.answer(ACK, outbox_relay.stream, rows[1].id)

        wait_until(lambda: pump_refused(outbox_relay), what="the relay's write to fail while the database is down")
        relay.restore()
        wait_until(lambda: (outbox_relay.pump(), sent_marks(world)[1][1])[1], what="the marks written once it is back")
        assert sent_marks(world) == [(rows[0].id, True, "summaries: bad"), (rows[1].id, True, None)]
    finally:
        outbox_relay.close()
        broker.socket.close()
        ctx.destroy(linger=0)


def direct_sessions(world: World, relay: Relay) -> sessionmaker[Session]:
    """Sessions of the world's database that do not go through the relay."""
    host, port = relay.target
    return make_session_factory(make_engine(make_url(world.url).set(host=host, port=port)))


def handled_rows(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).where(InboxCommand.handled_at.is_not(None))) or 0


@pytest.mark.expect_log("producer step failed")
def test_a_commit_carried_out_whose_answer_was_lost_still_sends_its_events(relayed: tuple[World, Relay]) -> None:
    world, relay = relayed
    direct = direct_sessions(world, relay)  # the test's writes, and the outbox relay's, never cut
    ctx: zmq.Context[Any] = zmq.Context()
    broker = StandInBroker(ctx)
    outbox_relay = OutboxRelay(direct, "orders", broker.endpoint, context=ctx, limits=CALM)
    handler = OrderHandler(world.sessions, outbox_relay.offer, lambda fills: None)
    loop = ProducerLoop("tcp://127.0.0.1:*", handler, outbox_relay, context=ctx, sweep_s=0.05)
    event.listen(world.engine, "commit", lambda connection: relay.hold_replies(), once=True)
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        market = spec("MARKET", "BTC/USDT", "BUY", 90_000.0, None, 1.0)
        store_with(direct, SignalCommand("btc-trend", (market,)))  # alice's and bob's orders: two events
        wait_until(lambda: handled_rows(direct) == 1, what="the signal's commit carried out, its answer held back")
        relay.cut()  # the answer never comes: the handler cannot know that its commit took place
        wait_until(lambda: loop.failures >= 1, what="the handler's commit to fail")
        relay.restore()
        store_with(direct, SignalCommand("btc-trend", (market,)))
        wait_until(lambda: handled_rows(direct) == 2, what="the next signal handled")
        got = broker.receive(None, 4)  # the loop's thread pumps the relay
        with direct() as session:
            committed = list(session.scalars(select(OutboxEvent.id).order_by(OutboxEvent.id)))
        assert [(event_id, prev_id) for _, event_id, prev_id, _ in got] == list(zip(committed, [0, *committed[:-1]]))
        broker.answer(ACK, outbox_relay.stream, committed[-1])
    finally:
        loop.stop()
        thread.join(timeout=10)
        broker.socket.close()
        ctx.destroy(linger=0)
        direct.kw["bind"].dispose()

