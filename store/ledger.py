"""An account's equity in a strategy, read from its position rows. Blocking (one query).

equity = the account's capital + Σ realized_pnl + Σ unrealized_pnl of the
account's positions in that strategy (CONTRACT §4): what the strategy made of
the capital it sizes its orders from, marked to the last known prices. Positions
the account holds in other strategies are not in it (they are on other streams).
The position handler puts it in every position event (from the rows its
transaction holds: producers/book.py), the streamer in every snapshot row (read
here); both sum with `equity_of`.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Account, Position
from store.money import CONTEXT


def equity_of(capital: Decimal, amounts: Iterable[tuple[Decimal, Decimal | None]]) -> Decimal:
    """capital + Σ (realized + unrealized) over (realized_pnl, unrealized_pnl) pairs, exactly."""
    total = capital
    for realized, unrealized in amounts:
        total = CONTEXT.add(total, CONTEXT.add(realized, unrealized or 0))
    return total


def equity(session: Session, account: Account, strategy_id: int) -> Decimal:
    """The equity of `account` in strategy `strategy_id` (exact: the sum of exact amounts)."""
    query = select(Position.realized_pnl, Position.unrealized_pnl).where(
        Position.account_id == account.id, Position.strategy_id == strategy_id
    )
    return equity_of(account.capital, ((realized, unrealized) for realized, unrealized in session.execute(query)))
