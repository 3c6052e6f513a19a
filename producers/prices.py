"""The last known price of a symbol, as the database knows it.

The order handler writes the price of every tick it handles (`market_prices`,
in the tick's transaction) and restores them at start; the webhook, which
sees no ticks, reads them here. Without a tick so far, both fall back on the
last fill's price (its execution row), so when the webhook accepts a MARKET
order without a price (CONTRACT §5: 400 when no price is known), the order
handler can price it too. A tick still waiting in the inbox is not known yet.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.columns import Money
from store.handoff import Execution
from store.models import MarketPrice, Order
from store.money import steps_of


def last_fill_price(session: Session, symbol: str) -> Money | None:
    """The price of the newest fill in `symbol` (an execution row), if any.

    A price on the symbol's step, not an order's average (which keeps more decimals).
    A database from before executions were rows has only the averages: the newest
    filled order's, rounded to the step.
    """
    executed = session.scalars(
        select(Execution.price).where(Execution.symbol == symbol).order_by(Execution.id.desc()).limit(1)
    ).first()
    if executed is not None:
        return executed
    average = session.scalars(
        select(Order.average_price)
        .where(Order.symbol == symbol, Order.average_price.is_not(None))
        .order_by(Order.updated_at.desc(), Order.id.desc())
        .limit(1)
    ).first()
    return None if average is None else steps_of(symbol).round_price(average)


def last_known_price(session: Session, symbol: str) -> Money | None:
    """The last tick's price of `symbol`, else its last fill's, else None."""
    known = session.get(MarketPrice, symbol)
    return known.price if known is not None else last_fill_price(session, symbol)


def last_known_prices(session: Session, symbols: list[str]) -> dict[str, Money | None]:
    """`last_known_price` of each symbol: the ticks in one query, the last fill of each symbol without one."""
    query = select(MarketPrice.symbol, MarketPrice.price).where(MarketPrice.symbol.in_(symbols))
    ticked = {row.symbol: row.price for row in session.execute(query)}
    return {symbol: ticked[symbol] if symbol in ticked else last_fill_price(session, symbol) for symbol in symbols}
