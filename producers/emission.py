"""Which events an order change makes (CONTRACT §4), and batch summaries. Pure.

`emit_order_events_smart` decides from the order's type, status and how much of
it was filled before; the order handler turns each Emission into an
`order_update` with store.rows.order_event. Every event carries the order's
full state (`quantity` is always the order's); an `order_filled` also carries
the fill's own size and price, `fill_quantity` and `fill_price` (CONTRACT §4). A REJECTED order (a MARKET with no
price known) is not in the contract's table: it is reported as
`order_cancelled` carrying status REJECTED, so a dashboard drops it like any
order that will not fill.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bus.events import BatchSummary, OrderBatchEvent
from bus.topics import StreamKey
from producers.exchange import Fill, OrderChange

# Summaries list order types in this order, whatever order the batch had.
SUMMARY_ORDER = ("MARKET", "LIMIT", "STOP_MARKET", "STOP_LIMIT")


@dataclass(frozen=True, slots=True)
class Emission:
    """One event to publish: its event_type and, for `order_filled`, the fill it reports."""

    event_type: str
    fill: Fill | None = None

    @property
    def fill_quantity(self) -> Decimal | None:
        return None if self.fill is None else self.fill.quantity

    @property
    def fill_price(self) -> Decimal | None:
        return None if self.fill is None else self.fill.price


def emit_order_events_smart(change: OrderChange) -> list[Emission]:
    """The events of one order change, in publication order.

    MARKET → order_filled only; NEW/OPEN (and TRIGGERED) → order_created, or
    order_updated for a known order; PARTIALLY_FILLED → order_created/updated and
    order_filled for the newly filled amount; FILLED → order_filled for the
    difference only; CANCELLED (and REJECTED) → order_cancelled. The fill is the
    change's own (the exchange's execution, not a difference of two sums).
    """
    order = change.order
    is_new = change.previous_filled is None
    fill = change.fill
    filled = [Emission("order_filled", fill)] if fill is not None and fill.quantity > 0 else []
    if order.status in ("CANCELLED", "REJECTED"):
        return [Emission("order_cancelled")]
    if order.order_type == "MARKET" or order.status == "FILLED":
        return filled
    announce = Emission("order_created" if is_new else "order_updated")
    if order.status == "PARTIALLY_FILLED":
        return [announce, *filled]
    return [announce]


class BatchTally:
    """Counts what one batch created and cancelled, per stream key and order type."""

    def __init__(self) -> None:
        self._counts: dict[StreamKey, dict[str, list[int]]] = {}

    def created(self, key: StreamKey, order_type: str) -> None:
        """Count an order the batch placed (a MARKET too, filled or not)."""
        self._cell(key, order_type)[0] += 1

    def cancelled(self, key: StreamKey, order_type: str) -> None:
        """Count an order the batch cancelled, under its own order type."""
        self._cell(key, order_type)[1] += 1

    def _cell(self, key: StreamKey, order_type: str) -> list[int]:
        per_type = self._counts.setdefault(key, {})
        return per_type.setdefault(order_type, [0, 0])

    def events(self, timestamp: str) -> list[OrderBatchEvent]:
        """One order_batch_update per key that had anything; none for an empty batch."""
        result = []
        for key, per_type in self._counts.items():
            summaries = tuple(
                BatchSummary(order_type=order_type, created=counts[0], cancelled=counts[1])
                for order_type in SUMMARY_ORDER
                if (counts := per_type.get(order_type)) and (counts[0] or counts[1])
            )
            if summaries:
                result.append(
                    OrderBatchEvent(
                        summaries=summaries,
                        strategy_id=key.strategy_id,
                        user_id=key.user_id,
                        timestamp=timestamp,
                    )
                )
        return result
