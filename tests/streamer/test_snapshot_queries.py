"""The snapshot queries behind `/api/positions` and `/api/orders` (streamer/queries.py), on a real database."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session

from store.models import Position
from streamer.queries import positions_of
from tests.store.factories import add_account, add_strategy, add_user

T = TypeVar("T")


def counting_statements(session: Session, read: Callable[[], T]) -> tuple[T, int]:
    """What `read()` returns, and how many SQL statements it sent to the database."""
    sent: list[str] = []

    def count(*args: Any) -> None:
        sent.append(args[2])

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        return read(), len(sent)
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_the_positions_snapshot_reads_each_accounts_equity_once_however_many_positions(session: Session) -> None:
    # One equity query per row read every position of the account per row: 300 positions were 300 queries
    # over 90,000 rows, ~300 ms of a streamer's database thread on PostgreSQL (seen in a walkthrough).
    owner = add_user(session, "trader")
    main, second = add_account(session, owner, "main"), add_account(session, owner, "second")
    strategy = add_strategy(session, owner, "btc-trend")

    def hold(account_id: int, n: int, realized: str) -> None:
        session.add(Position(account_id=account_id, strategy_id=strategy.id, user_id=owner.id, symbol=f"S{n}/USDT",
                             quantity=Decimal("1"), entry_price=Decimal("100"), realized_pnl=Decimal(realized)))

    hold(main.id, 0, "1.5")
    hold(second.id, 1, "-2.25")
    session.commit()
    few, statements_for_few = counting_statements(session, lambda: positions_of(session, owner.id, strategy.id))
    for n in range(2, 42):
        hold(main.id, n, "0.5")
    session.commit()
    many, statements_for_many = counting_statements(session, lambda: positions_of(session, owner.id, strategy.id))

    assert len(few) == 2 and len(many) == 42
    assert statements_for_many == statements_for_few == 3  # the rows, then one equity per account
    equities = {row["account"]["name"]: row["account"]["equity"] for row in many}
    assert equities == {"main": "10021.5", "second": "9997.75"}  # 10,000 + 1.5 + 40 * 0.5; 10,000 - 2.25
