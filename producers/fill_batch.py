"""What one transaction of the position handler reads before it applies a batch of fills. Blocking.

    claimed executions ─▶ load(session, executions) ─▶ Loaded: book (producers/book.py) · accounts · marks

Five statements whatever the batch's size (and one more per symbol without a
tick so far): the positions of the batch's symbols and every position of their
accounts and of the fills' accounts, those accounts, the last known prices. A
fill's position that does not exist yet is made here, in fill order, and flushed
once, so that its id is in its first event and no statement runs while the fills
are folded (every one of them would flush the session first).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from producers.book import Book
from producers.prices import last_known_prices
from store.handoff import Execution
from store.models import Account, Position
from store.money import ZERO


@dataclass(frozen=True, slots=True)
class Loaded:
    """A batch's positions, accounts by id, and each symbol's last known price (prices.py)."""

    book: Book
    accounts: dict[int, Account]
    marks: dict[str, Decimal | None]


def load(session: Session, executions: list[Execution]) -> Loaded:
    """Read what folding `executions` needs; LookupError when a fill's account is gone (before anything is written)."""
    symbols = sorted({e.symbol for e in executions})
    own = sorted({e.account_id for e in executions})
    holders = select(Position.account_id).where(Position.symbol.in_(symbols))
    positions = session.scalars(
        select(Position).where(or_(Position.symbol.in_(symbols), Position.account_id.in_(holders),
                                   Position.account_id.in_(own)))
    )
    book = Book(positions)
    accounts = {a.id: a for a in session.scalars(select(Account).where(or_(Account.id.in_(holders), Account.id.in_(own))))}
    for execution in executions:
        if execution.account_id not in accounts:
            raise LookupError(f"account {execution.account_id} of fill {execution.id} is gone")
    marks = last_known_prices(session, symbols)
    new = [_open(book, e) for e in executions if book.get(e.account_id, e.strategy_id, e.symbol) is None]
    if new:
        session.add_all(new)
        session.flush()
    return Loaded(book, accounts, marks)


def _open(book: Book, fill: Execution) -> Position:
    position = Position(
        account_id=fill.account_id, strategy_id=fill.strategy_id, user_id=fill.user_id,
        symbol=fill.symbol, quantity=ZERO, entry_price=None, realized_pnl=ZERO, unrealized_pnl=ZERO,
    )
    book.add(position)
    return position
