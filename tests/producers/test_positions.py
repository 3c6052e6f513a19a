"""Position math: open, add, reduce, close, flip, realised PnL; and the event each change makes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producers.positions import Holding, apply_fill, position_event_type

FLAT = Holding()


def fills(*steps: tuple[str, float, float]) -> Holding:
    holding = FLAT
    for side, quantity, price in steps:
        holding = apply_fill(holding, side, quantity, price)
    return holding


POSITIONS = [
    ("open long", [("BUY", 2, 100)], Holding(2, 100, 0)),
    ("open short", [("SELL", 2, 100)], Holding(-2, 100, 0)),
    ("add to long averages the entry", [("BUY", 1, 100), ("BUY", 3, 200)], Holding(4, 175, 0)),
    ("add to short averages the entry", [("SELL", 1, 100), ("SELL", 1, 50)], Holding(-2, 75, 0)),
    ("reduce long realises the gain, keeps the entry", [("BUY", 4, 100), ("SELL", 1, 130)], Holding(3, 100, 30)),
    ("reduce short realises the gain", [("SELL", 4, 100), ("BUY", 1, 90)], Holding(-3, 100, 10)),
    ("reduce long at a loss", [("BUY", 2, 100), ("SELL", 1, 80)], Holding(1, 100, -20)),
    ("close long", [("BUY", 2, 100), ("SELL", 2, 110)], Holding(0, None, 20)),
    ("close short at a loss", [("SELL", 2, 100), ("BUY", 2, 110)], Holding(0, None, -20)),
    ("flip long to short", [("BUY", 2, 100), ("SELL", 5, 120)], Holding(-3, 120, 40)),
    ("flip short to long", [("SELL", 1, 100), ("BUY", 3, 90)], Holding(2, 90, 10)),
    ("reopen after close keeps realised PnL", [("BUY", 1, 100), ("SELL", 1, 110), ("BUY", 1, 50)], Holding(1, 50, 10)),
]


@pytest.mark.parametrize(("steps", "expected"), [pytest.param(s, e, id=n) for n, s, e in POSITIONS])
def test_position_math(steps: list[tuple[str, float, float]], expected: Holding) -> None:
    result = fills(*steps)
    assert result.quantity == pytest.approx(expected.quantity)
    assert result.realized_pnl == pytest.approx(expected.realized_pnl)
    if expected.entry_price is None:
        assert result.entry_price is None
    else:
        assert result.entry_price == pytest.approx(expected.entry_price)


@pytest.mark.parametrize(
    ("before", "after", "event_type"),
    [
        (FLAT, Holding(1, 10), "position_created"),
        (Holding(1, 10), Holding(2, 10), "position_updated"),
        (Holding(1, 10), Holding(-1, 12), "position_updated"),
        (Holding(1, 10), Holding(0, None, 5), "position_closed"),
    ],
)
def test_event_type_of_a_change(before: Holding, after: Holding, event_type: str) -> None:
    assert position_event_type(before, after) == event_type


SIDE_FILLS = st.lists(
    st.tuples(st.sampled_from(["BUY", "SELL"]), st.integers(1, 1000).map(lambda q: q / 100), st.integers(1, 10_000)),
    min_size=1, max_size=30,
)


@given(SIDE_FILLS)
def test_quantity_is_the_signed_sum_and_pnl_balances_cash(steps: list[tuple[str, float, int]]) -> None:
    holding = fills(*[(side, quantity, float(price)) for side, quantity, price in steps])
    signed = sum(q if side == "BUY" else -q for side, q, _ in steps)
    assert holding.quantity == pytest.approx(signed, abs=1e-6)
    if holding.is_flat:
        # Flat again: every unit bought was sold, so the realised PnL is the cash that came in.
        cash = sum(q * p if side == "SELL" else -q * p for side, q, p in steps)
        assert holding.realized_pnl == pytest.approx(cash, abs=1e-6)
        assert holding.entry_price is None
    else:
        assert holding.entry_price is not None and holding.entry_price > 0
