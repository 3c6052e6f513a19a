"""Position arithmetic: fills into a holding, average cost, realised and unrealised P&L. Pure, exact.

A holding is a signed quantity (BUY adds, SELL subtracts), the average entry
price of what is open and the P&L realised so far, all Decimals (store/money.py):

- Opening or adding: the entry price becomes the average cost of what is open,
  (|held| x entry + quantity x price) / |held + quantity|, rounded to the
  symbol's average step.
- Reducing (a fill against the position): the entry price stays; the closed
  quantity realises closed x (price - entry) for a long, closed x (entry - price)
  for a short, rounded to the P&L step and added to `realized_pnl`.
- A fill larger than the position closes it and opens the other side with the
  rest, at the fill's price (on the average step too). Flat: no entry price.
- Unrealised P&L at a mark price: quantity x (mark - entry), rounded to the P&L
  step (negative quantity: a short gains when the mark falls); 0 when flat.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from store.money import CONTEXT, DEFAULT_STEPS, ZERO, Steps


@dataclass(frozen=True, slots=True)
class Holding:
    """A position's state: signed quantity, entry price (None when flat), realised P&L."""

    quantity: Decimal = ZERO
    entry_price: Decimal | None = None
    realized_pnl: Decimal = ZERO

    @property
    def is_flat(self) -> bool:
        return self.quantity.is_zero()


def apply_fill(holding: Holding, side: str, quantity: Decimal, price: Decimal, steps: Steps = DEFAULT_STEPS) -> Holding:
    """The holding after buying or selling `quantity` at `price`."""
    c = CONTEXT
    signed = quantity if side == "BUY" else c.minus(quantity)
    if holding.is_flat or (holding.quantity > 0) == (signed > 0):
        return _add(holding, signed, price, steps)
    entry = holding.entry_price if holding.entry_price is not None else price
    closed = min(abs(holding.quantity), quantity)
    gain = c.subtract(price, entry) if holding.quantity > 0 else c.subtract(entry, price)
    realized = c.add(holding.realized_pnl, steps.round_pnl(c.multiply(closed, gain)))
    remaining = c.add(holding.quantity, signed)
    if remaining.is_zero():
        return Holding(ZERO, None, realized)
    if (remaining > 0) != (holding.quantity > 0):
        return Holding(remaining, steps.round_average(price), realized)  # flipped: the rest opened at this price
    return Holding(remaining, entry, realized)


def _add(holding: Holding, signed: Decimal, price: Decimal, steps: Steps) -> Holding:
    """Open or increase: the entry price becomes the average cost."""
    c = CONTEXT
    held = ZERO if holding.is_flat else holding.quantity
    total = c.add(held, signed)
    if held.is_zero() or holding.entry_price is None:
        # One fill's average is its price, written on the average step like every other (CONTRACT §4: "90000.0000000000").
        return Holding(total, steps.round_average(price), holding.realized_pnl)
    cost = c.add(c.multiply(abs(held), holding.entry_price), c.multiply(abs(signed), price))
    return Holding(total, steps.round_average(c.divide(cost, abs(total))), holding.realized_pnl)


def unrealized_pnl(holding: Holding, mark_price: Decimal | None, steps: Steps = DEFAULT_STEPS) -> Decimal:
    """What closing the holding at `mark_price` would realise; 0 when flat or nothing is known."""
    if holding.is_flat or mark_price is None or holding.entry_price is None:
        return ZERO
    return steps.round_pnl(CONTEXT.multiply(holding.quantity, CONTEXT.subtract(mark_price, holding.entry_price)))


def position_event_type(before: Holding, after: Holding) -> str:
    """position_created from flat, position_closed to flat, position_updated otherwise."""
    if before.is_flat:
        return "position_created"
    return "position_closed" if after.is_flat else "position_updated"
