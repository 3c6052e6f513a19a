"""The hand-off tables on every database (SQLite, and PostgreSQL when configured): claimed once, in id order, marked."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from bus.events import BatchSummary, OrderBatchEvent
from producers import fills, inbox, outbox
from producers.commands import TickCommand, decode_body
from producers.outbox import Written
from store.columns import utc_now
from store.db import make_session_factory
from store.handoff import Execution, InboxCommand, OutboxEvent
from store.models import Account, Order, Strategy, User


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def tick(price: float) -> TickCommand:
    return TickCommand("BTC/USDT", Decimal(repr(price)))


def summary(created: int) -> OrderBatchEvent:
    return OrderBatchEvent(summaries=(BatchSummary(order_type="LIMIT", created=created, cancelled=0),),
                           strategy_id=1, user_id=1, timestamp="2025-01-06T09:30:00.000000Z")


def test_inbox_rows_come_out_in_arrival_order_and_are_claimed_once(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        for price in (1.0, 2.0, 3.0):
            inbox.put(session, tick(price))
        session.commit()
        items = inbox.pending(session, 2)
        assert [decode_body(i.kind, i.body) for i in items] == [tick(1.0), tick(2.0)]
        assert inbox.claim(session, items[0].id) and not inbox.claim(session, items[0].id)
        session.commit()
    inbox.fail(sessions, items[1].id, "InvalidCommand: " + "x" * 5000)
    inbox.fail(sessions, items[0].id, "too late: it is handled")
    with sessions() as session:
        rows = session.scalars(select(InboxCommand).order_by(InboxCommand.id)).all()
        assert [(r.outcome, r.error and len(r.error)) for r in rows] == [("done", None), ("failed", 1000), (None, None)]
        assert [i.id for i in inbox.pending(session, 10)] == [rows[2].id]


def test_inbox_prune_deletes_old_done_rows_only(sessions: sessionmaker[Session]) -> None:
    old = utc_now() - timedelta(seconds=inbox.RETAIN_S + 1)
    with sessions() as session:
        for outcome in ("done", "failed", "done", None):
            session.add(InboxCommand(kind="tick", body="{}", outcome=outcome, handled_at=old if outcome else None))
        session.commit()
        session.execute(update(InboxCommand).where(InboxCommand.id == 3).values(handled_at=utc_now()))
        assert inbox.prune(session) == 1
        session.commit()
        assert [r.outcome for r in session.scalars(select(InboxCommand).order_by(InboxCommand.id))] == ["failed", "done", None]


def _order(session: Session) -> Order:
    user = User(username="u", password_hash="x", api_token_hash="h")
    session.add(user)
    session.flush()
    account = Account(user_id=user.id, name="a", exchange="paper", capital=Decimal(1))
    strategy = Strategy(owner_id=user.id, name="s", group_name="g", webhook_token_hash="t")
    session.add_all([account, strategy])
    session.flush()
    order = Order(order_id="o", account_id=account.id, strategy_id=strategy.id, user_id=user.id, symbol="A/B",
                  side="BUY", order_type="MARKET", quantity=Decimal(1), status="FILLED")
    session.add(order)
    session.flush()
    return order


def test_fills_are_claimed_once_in_id_order(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        order = _order(session)
        for quantity in (Decimal(1), Decimal(2)):
            session.add(Execution(order_id=order.id, account_id=order.account_id, strategy_id=order.strategy_id,
                                  user_id=order.user_id, symbol="A/B", side="BUY", quantity=quantity, price=Decimal(1)))
        session.commit()
        first, second = fills.pending(session, 10)
        assert fills.last_applied(session) == 0
        claimed = fills.claim(session, first)
        assert claimed is not None and claimed.quantity == 1.0 and fills.claim(session, first) is None
        session.commit()
        assert fills.last_applied(session) == first and fills.pending(session, 10) == [second]
    fills.fail(sessions, second, "LookupError: gone")
    with sessions() as session:
        assert fills.pending(session, 10) == [] and session.get(Execution, second).error == "LookupError: gone"  # type: ignore[union-attr]


def test_outbox_rows_keep_their_write_order_and_marks_move_the_last_sent(sessions: sessionmaker[Session]) -> None:
    written = Written("orders")
    with sessions() as session:
        for n in range(1, 5):
            written.add(session, summary(n))
        session.commit()
    rows = written.rows()
    assert [r.id for r in rows] == sorted(r.id for r in rows) and len(set(r.id for r in rows)) == 4
    with sessions() as session:
        assert outbox.rows_after(session, "orders", 0, 10) == rows and outbox.rows_after(session, "positions", 0, 10) == []
        outbox.mark_sent(session, "orders", 0, rows[1].id)
        outbox.mark_failed(session, "orders", rows[2].id, "bad")
        session.commit()
        assert outbox.last_sent(session, "orders") == rows[2].id and outbox.last_sent(session, "positions") == 0
        failed = session.scalars(select(OutboxEvent.failed).order_by(OutboxEvent.id)).all()
        assert failed == [None, None, "bad", None]
    stream = outbox.stream_name(sessions, "orders")
    assert stream == outbox.stream_name(sessions, "orders") != outbox.stream_name(sessions, "positions")
