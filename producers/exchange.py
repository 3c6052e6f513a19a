"""The paper exchange: resting orders per symbol, ticks in, order changes and fills out. Pure.

Rules (CONTRACT §5):
- MARKET fills at once, in full, at the signal's price or else the symbol's last
  tick; with neither it is REJECTED.
- LIMIT, STOP_MARKET and STOP_LIMIT are created NEW and rest until a tick.
  A BUY LIMIT fills when the tick's price is at or below its price (a SELL at or
  above), at its own price: a resting order is the maker.
  A BUY stop triggers when the price is at or above `stop_price` (a SELL at or
  below); a STOP_MARKET then fills at the tick's price, a STOP_LIMIT becomes
  a limit order at `price` (TRIGGERED until it fills).
- A tick's volume is shared by the orders it fills, oldest first; an order that
  gets less than its remainder is PARTIALLY_FILLED. No volume: no bound.
- CANCEL_ALL_ORDER cancels every resting order of one (strategy, symbol).

Quantities and prices are Decimals on their symbol's steps (store/money.py), so
a fill's remainder is exact: an order is FILLED when nothing remains, not when
what remains is small. The average price is rounded to the average step.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from store.money import CONTEXT, ZERO, steps_of

RESTING = frozenset({"NEW", "OPEN", "PARTIALLY_FILLED", "TRIGGERED"})
STOPS = frozenset({"STOP_MARKET", "STOP_LIMIT"})


@dataclass(slots=True)
class PaperOrder:
    """The exchange's view of one order (the Order row keeps the same fields)."""

    order_id: str
    strategy_id: int
    account_id: int
    symbol: str
    side: str
    order_type: str
    quantity: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None
    status: str = "NEW"
    filled_quantity: Decimal = ZERO
    average_price: Decimal | None = None

    @property
    def remaining(self) -> Decimal:
        return CONTEXT.subtract(self.quantity, self.filled_quantity)

    @property
    def triggered(self) -> bool:
        """Whether a stop order has turned into a market or limit order."""
        return self.order_type in STOPS and self.status != "NEW"

    def fill(self, quantity: Decimal, price: Decimal) -> None:
        """Execute `quantity` at `price`: weighted average price, FILLED when nothing remains."""
        c = CONTEXT
        filled = c.add(self.filled_quantity, quantity)
        previous = c.multiply(self.average_price or ZERO, self.filled_quantity)
        average = c.divide(c.add(previous, c.multiply(price, quantity)), filled)
        self.average_price = steps_of(self.symbol).round_average(average)
        self.filled_quantity = filled
        self.status = "FILLED" if filled >= self.quantity else "PARTIALLY_FILLED"


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of an order."""

    quantity: Decimal
    price: Decimal


@dataclass(frozen=True, slots=True)
class OrderChange:
    """An order after a change; `previous_filled` is None when the order is new."""

    order: PaperOrder
    previous_filled: Decimal | None
    fill: Fill | None = None


class PaperExchange:
    """Resting orders by symbol (in arrival order) and the last tick price of each symbol."""

    def __init__(self) -> None:
        self.books: defaultdict[str, list[PaperOrder]] = defaultdict(list)
        self.last_prices: dict[str, Decimal] = {}

    def restore(self, order: PaperOrder) -> None:
        """Put back a resting order read from the database (at start-up)."""
        if order.status in RESTING:
            self.books[order.symbol].append(order)

    def place(self, order: PaperOrder, market_price: Decimal | None = None) -> OrderChange:
        """Accept a new order: a MARKET fills (or is rejected) now, the others rest."""
        if order.order_type != "MARKET":
            order.status = "NEW"
            self.books[order.symbol].append(order)
            return OrderChange(order, None)
        price = market_price if market_price is not None else self.last_prices.get(order.symbol)
        if price is None:
            order.status = "REJECTED"
            return OrderChange(order, None)
        order.fill(order.quantity, price)
        return OrderChange(order, None, Fill(order.quantity, price))

    def cancel_all(self, strategy_id: int, symbol: str) -> list[OrderChange]:
        """Cancel the strategy's resting orders in `symbol`, oldest first."""
        book = self.books.get(symbol, [])
        cancelled = [order for order in book if order.strategy_id == strategy_id]
        self.books[symbol] = [order for order in book if order.strategy_id != strategy_id]
        changes = []
        for order in cancelled:
            previous = order.filled_quantity
            order.status = "CANCELLED"
            changes.append(OrderChange(order, previous))
        return changes

    def tick(self, symbol: str, price: Decimal, volume: Decimal | None = None) -> list[OrderChange]:
        """Apply a market price: trigger stops, fill what it crosses, within its volume."""
        self.last_prices[symbol] = price
        left = volume
        changes = []
        for order in self.books.get(symbol, []):
            previous = order.filled_quantity
            triggered_now = _trigger(order, price)
            execution = _execution_price(order, price)
            if execution is not None and (left is None or left > ZERO):
                amount = order.remaining if left is None else min(order.remaining, left)
                order.fill(amount, execution)
                left = None if left is None else CONTEXT.subtract(left, amount)
                changes.append(OrderChange(order, previous, Fill(amount, execution)))
            elif triggered_now:
                changes.append(OrderChange(order, previous))
        self.books[symbol] = [o for o in self.books.get(symbol, []) if o.status in RESTING]
        return changes

    def open_orders(self, symbol: str | None = None) -> list[PaperOrder]:
        """Resting orders, of one symbol or all."""
        if symbol is not None:
            return list(self.books.get(symbol, []))
        return [order for book in self.books.values() for order in book]


def _trigger(order: PaperOrder, price: Decimal) -> bool:
    """Trigger a NEW stop order the price reached; True if it triggered now."""
    if order.order_type not in STOPS or order.triggered or order.stop_price is None:
        return False
    reached = price >= order.stop_price if order.side == "BUY" else price <= order.stop_price
    if reached:
        order.status = "TRIGGERED"
    return reached


def _execution_price(order: PaperOrder, price: Decimal) -> Decimal | None:
    """The price at which `order` executes against a tick at `price`, None if it does not."""
    if order.order_type in STOPS and not order.triggered:
        return None
    if order.order_type in ("MARKET", "STOP_MARKET"):
        return price
    limit = order.price
    if limit is None:
        return None
    crosses = price <= limit if order.side == "BUY" else price >= limit
    return limit if crosses else None
