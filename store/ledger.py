"""An account's equity in a strategy, read from its position rows. Blocking (one query).

equity = the account's capital + Σ realized_pnl + Σ unrealized_pnl of the
account's positions in that strategy (CONTRACT §4): what the strategy made of
the capital it sizes its orders from, marked to the last known prices. Positions
the account holds in other strategies are not in it (they are on other streams).
The position handler puts it in every position event, the streamer in every
snapshot row, so both read it here.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Account, Position
from store.money import CONTEXT


def equity(session: Session, account: Account, strategy_id: int) -> Decimal:
    """The equity of `account` in strategy `strategy_id` (exact: the sum of exact amounts)."""
    query = select(Position.realized_pnl, Position.unrealized_pnl).where(
        Position.account_id == account.id, Position.strategy_id == strategy_id
    )
    total = account.capital
    for realized, unrealized in session.execute(query):
        total = CONTEXT.add(total, CONTEXT.add(realized, unrealized or 0))
    return total
