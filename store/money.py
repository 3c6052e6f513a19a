"""Exact money: each symbol's steps, the rounding rules, and the Decimal arithmetic context.

Every quantity, price and amount of money is a `Decimal` (never a float), stored
in an ExactDecimal column (store/columns.py) and sent as a decimal string (bus/decimals.py).
The rules, documented in CONTRACT §4:

- A quantity is a multiple of its symbol's quantity step: an order's size is
  rounded down to it (an order never spends more than `qty_per` of the capital),
  a tick's volume too. A price is rounded to the symbol's price step (half even).
- An average price (an order's `average_price`, a position's `entry_price`)
  keeps AVERAGE_EXTRA_PLACES more decimals than the price step, rounded half even.
- P&L is rounded half even to the P&L step: quantity step x price step (the
  unit in which a quantity on its step times a price on its step is exact).
  Realised P&L adds one rounded amount per fill that reduces a position.

Steps are powers of ten. STEPS is the one table of steps; a symbol not in it has DEFAULT_STEPS: quantities
of 1e-8 (a satoshi) and prices of 1e-12, the webhook's smallest accepted price
(producers/signals.py BOUNDS), so that no accepted price rounds to zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow

# Wide enough that no product or sum of bounded values rounds before the step does
# (quantities below 1e24 with 8 decimals times prices below 1e12 with 12 decimals: 56 digits).
CONTEXT = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
AVERAGE_EXTRA_PLACES = 8
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Steps:
    """The increments of one symbol: of its quantities (base units) and of its prices (quote units)."""

    quantity: Decimal
    price: Decimal

    def __post_init__(self) -> None:
        # Decimal.quantize rounds to an exponent, so a step is a power of ten (0.01, never 0.05).
        for step in (self.quantity, self.price):
            if step != Decimal(1).scaleb(step.adjusted()):
                raise ValueError(f"step {step} is not a power of ten")

    @property
    def average(self) -> Decimal:
        """The step of average prices: the price step with AVERAGE_EXTRA_PLACES more decimals."""
        return self.price.scaleb(-AVERAGE_EXTRA_PLACES)

    @property
    def pnl(self) -> Decimal:
        """The step of P&L amounts (quote units)."""
        return CONTEXT.multiply(self.quantity, self.price)

    def round_quantity(self, value: Decimal) -> Decimal:
        """Rounded down to the quantity step (toward zero)."""
        return value.quantize(self.quantity, rounding=ROUND_DOWN, context=CONTEXT)

    def round_price(self, value: Decimal) -> Decimal:
        """Rounded half even to the price step."""
        return value.quantize(self.price, rounding=ROUND_HALF_EVEN, context=CONTEXT)

    def round_average(self, value: Decimal) -> Decimal:
        """Rounded half even to the step of average prices."""
        return value.quantize(self.average, rounding=ROUND_HALF_EVEN, context=CONTEXT)

    def round_pnl(self, value: Decimal) -> Decimal:
        """Rounded half even to the P&L step."""
        return value.quantize(self.pnl, rounding=ROUND_HALF_EVEN, context=CONTEXT)


DEFAULT_STEPS = Steps(quantity=Decimal("0.00000001"), price=Decimal("0.000000000001"))
_CENT_PRICED = Steps(quantity=Decimal("0.00000001"), price=Decimal("0.01"))
STEPS: dict[str, Steps] = {
    "BTC/USDT": _CENT_PRICED,
    "ETH/USDT": _CENT_PRICED,
    "SOL/USDT": _CENT_PRICED,
}


def steps_of(symbol: str) -> Steps:
    """The steps of `symbol` (upper-case BASE/QUOTE), DEFAULT_STEPS when it is not in the table."""
    return STEPS.get(symbol, DEFAULT_STEPS)


def exact(value: Decimal | int | float | str) -> Decimal:
    """A Decimal of a value read from a database column or an old row (a float by its shortest digits)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)
