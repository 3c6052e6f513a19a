"""The last known price of a symbol, as the database knows it.

The order handler knows the last tick of every symbol since it started; the
webhook does not see ticks. Both fall back on the last fill recorded in the
orders table, so when the webhook accepts a MARKET order without a price
(CONTRACT §5: 400 when no price is known), the order handler can price it too.
The reverse is not guaranteed: a tick the order handler saw but that filled
nothing leaves no trace in the database, so the webhook may answer 400 for a
symbol that only had ticks so far (the order handler would have used them).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Order


def last_fill_price(session: Session, symbol: str) -> float | None:
    """The average price of the most recently updated filled order in `symbol`, if any."""
    query = (
        select(Order.average_price)
        .where(Order.symbol == symbol, Order.average_price.is_not(None))
        .order_by(Order.updated_at.desc(), Order.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()
