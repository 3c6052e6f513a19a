"""Position math: open, add, reduce, close, flip, realised and unrealised P&L, exactly; the event of each change."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus import decimals
from producers.ledger import Holding, apply_fill, position_event_type, unrealized_pnl
from store.money import DEFAULT_STEPS, STEPS, Steps

FLAT = Holding()
D = Decimal


def fills(*steps: tuple[str, int | str, int | str], symbol_steps: Steps = DEFAULT_STEPS) -> Holding:
    holding = FLAT
    for side, quantity, price in steps:
        holding = apply_fill(holding, side, D(quantity), D(price), symbol_steps)
    return holding


POSITIONS = [
    ("open long", [("BUY", 2, 100)], Holding(D(2), D(100), D(0))),
    ("open short", [("SELL", 2, 100)], Holding(D(-2), D(100), D(0))),
    ("add to long averages the entry", [("BUY", 1, 100), ("BUY", 3, 200)], Holding(D(4), D(175), D(0))),
    ("add to short averages the entry", [("SELL", 1, 100), ("SELL", 1, 50)], Holding(D(-2), D(75), D(0))),
    ("reduce long realises the gain, keeps the entry", [("BUY", 4, 100), ("SELL", 1, 130)], Holding(D(3), D(100), D(30))),
    ("reduce short realises the gain", [("SELL", 4, 100), ("BUY", 1, 90)], Holding(D(-3), D(100), D(10))),
    ("reduce long at a loss", [("BUY", 2, 100), ("SELL", 1, 80)], Holding(D(1), D(100), D(-20))),
    ("close long", [("BUY", 2, 100), ("SELL", 2, 110)], Holding(D(0), None, D(20))),
    ("close short at a loss", [("SELL", 2, 100), ("BUY", 2, 110)], Holding(D(0), None, D(-20))),
    ("flip long to short", [("BUY", 2, 100), ("SELL", 5, 120)], Holding(D(-3), D(120), D(40))),
    ("flip short to long", [("SELL", 1, 100), ("BUY", 3, 90)], Holding(D(2), D(90), D(10))),
    ("reopen after close keeps realised PnL", [("BUY", 1, 100), ("SELL", 1, 110), ("BUY", 1, 50)], Holding(D(1), D(50), D(10))),
    ("decimals stay exact", [("BUY", "0.1", "0.1"), ("BUY", "0.2", "0.1"), ("SELL", "0.3", "0.2")], Holding(D(0), None, D("0.03"))),
    ("an average that does not terminate is rounded half even to the average step",
     [("BUY", 1, 1), ("BUY", 2, 2)], Holding(D(3), D("1.66666666666666666667"), D(0))),
]


@pytest.mark.parametrize(("steps", "expected"), [pytest.param(s, e, id=n) for n, s, e in POSITIONS])
def test_position_math_is_exact(steps: list[tuple[str, int | str, int | str]], expected: Holding) -> None:
    result = fills(*steps)
    assert (result.quantity, result.entry_price, result.realized_pnl) == (
        expected.quantity, expected.entry_price, expected.realized_pnl
    )


# The entry price's text, as the event and the snapshot carry it: an average price keeps 8 more decimals than
# the price step (CONTRACT §4), like an order's average_price, also when one fill opened the position ("90000.00" was sent).
ENTRY_TEXTS = [
    ("open", [("BUY", "0.05", "90000.00")], "90000.0000000000"),
    ("average", [("BUY", "0.05", "90000.00"), ("BUY", "0.05", "90000.01")], "90000.0050000000"),
    ("flip opens the rest at the fill price", [("BUY", "0.05", "90000.00"), ("SELL", "0.1", "91000.00")], "91000.0000000000"),
]


@pytest.mark.parametrize(("steps", "text"), [pytest.param(s, t, id=n) for n, s, t in ENTRY_TEXTS])
def test_the_entry_price_is_on_the_average_step(steps: list[tuple[str, int | str, int | str]], text: str) -> None:
    entry = fills(*steps, symbol_steps=STEPS["BTC/USDT"]).entry_price
    assert entry is not None and decimals.text(entry) == text


@pytest.mark.parametrize(
    ("holding", "mark", "expected"),
    [
        (Holding(D(2), D(100)), D(110), D(20)),  # a long gains when the mark rises
        (Holding(D(-2), D(100)), D(110), D(-20)),  # a short loses
        (Holding(D("0.5"), D("100.5")), D("100.25"), D("-0.125")),
        (FLAT, D(110), D(0)),
        (Holding(D(1), D(100)), None, D(0)),
    ],
)
def test_unrealized_pnl_is_quantity_times_the_move_of_the_mark(holding: Holding, mark: Decimal | None, expected: Decimal) -> None:
    assert unrealized_pnl(holding, mark) == expected


@pytest.mark.parametrize(
    ("before", "after", "event_type"),
    [
        (FLAT, Holding(D(1), D(10)), "position_created"),
        (Holding(D(1), D(10)), Holding(D(2), D(10)), "position_updated"),
        (Holding(D(1), D(10)), Holding(D(-1), D(12)), "position_updated"),
        (Holding(D(1), D(10)), Holding(D(0), None, D(5)), "position_closed"),
    ],
)
def test_event_type_of_a_change(before: Holding, after: Holding, event_type: str) -> None:
    assert position_event_type(before, after) == event_type


def reference(steps: Steps, trades: list[tuple[str, Decimal, Decimal]]) -> tuple[Fraction, Fraction | None, Fraction]:
    """Average cost computed apart from the ledger: rational numbers, Python's half-even round()."""

    def rounded(value: Fraction, step: Decimal) -> Fraction:
        return round(value / Fraction(step)) * Fraction(step)

    quantity, entry, realized = Fraction(0), None, Fraction(0)
    for side, size, price in trades:
        signed = Fraction(size) if side == "BUY" else -Fraction(size)
        if quantity == 0 or (quantity > 0) == (signed > 0):
            if quantity == 0 or entry is None:
                entry = Fraction(price)
            else:
                entry = rounded((abs(quantity) * entry + abs(signed) * Fraction(price)) / abs(quantity + signed), steps.average)
        else:
            assert entry is not None
            closed = min(abs(quantity), abs(signed))
            direction = 1 if quantity > 0 else -1
            realized += rounded(closed * (Fraction(price) - entry) * direction, steps.pnl)
            if quantity + signed == 0:
                entry = None
            elif (quantity + signed > 0) != (quantity > 0):
                entry = Fraction(price)
        quantity += signed
    return quantity, entry, realized


SYMBOL_STEPS = st.sampled_from([DEFAULT_STEPS, STEPS["BTC/USDT"], Steps(D("0.001"), D("0.1"))])


@st.composite
def fill_sequences(draw: st.DrawFn) -> tuple[Steps, list[tuple[str, Decimal, Decimal]]]:
    steps = draw(SYMBOL_STEPS)
    trade = st.tuples(
        st.sampled_from(["BUY", "SELL"]),
        st.integers(1, 10**9).map(lambda n: n * steps.quantity),  # partial sizes: any multiple of the step
        st.integers(1, 10**9).map(lambda n: n * steps.price),
    )
    return steps, draw(st.lists(trade, min_size=1, max_size=40))


@given(fill_sequences())
def test_any_fills_leave_the_exact_sum_and_the_reference_average_cost_pnl(
    case: tuple[Steps, list[tuple[str, Decimal, Decimal]]],
) -> None:
    steps, trades = case
    holding = FLAT
    for side, quantity, price in trades:
        holding = apply_fill(holding, side, quantity, price, steps)
    signed_sum = sum((q if side == "BUY" else -q for side, q, _ in trades), D(0))
    assert holding.quantity == signed_sum  # exact: Decimal equality, no tolerance
    quantity, entry, realized = reference(steps, trades)
    assert Fraction(holding.quantity) == quantity
    assert Fraction(holding.realized_pnl) == realized
    assert (holding.entry_price is None) == (entry is None)
    if entry is not None:
        assert holding.entry_price is not None and Fraction(holding.entry_price) == entry
    assert holding.realized_pnl == holding.realized_pnl.quantize(steps.pnl)  # on the P&L step
    if holding.entry_price is not None:  # written on the average step (CONTRACT §4), whether it opened or averaged
        assert holding.entry_price.as_tuple().exponent == steps.average.as_tuple().exponent
