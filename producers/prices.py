"""The last known price of a symbol, as the database knows it.

The order handler writes the price of every tick it handles (`market_prices`,
in the tick's transaction) and restores them at start; the webhook, which
sees no ticks, reads them here. Without a tick so far, both fall back on the
last fill recorded in the orders table, so when the webhook accepts a MARKET
order without a price (CONTRACT §5: 400 when no price is known), the order
handler can price it too. A tick still waiting in the inbox is not known yet.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import MarketPrice, Money, Order


def last_fill_price(session: Session, symbol: str) -> Money | None:
    """The average price of the most recently updated filled order in `symbol`, if any."""
    query = (
        select(Order.average_price)
        .where(Order.symbol == symbol, Order.average_price.is_not(None))
        .order_by(Order.updated_at.desc(), Order.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def last_known_price(session: Session, symbol: str) -> Money | None:
    """The last tick's price of `symbol`, else its last fill's, else None."""
    known = session.get(MarketPrice, symbol)
    return known.price if known is not None else last_fill_price(session, symbol)
