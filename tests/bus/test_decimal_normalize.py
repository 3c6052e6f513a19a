"""`decimals.normalize` (the streamer's hot path for a plain publisher's numbers) writes exactly what `text(parse())` writes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus import decimals


@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(min_value=-(10**30), max_value=10**30))
def test_normalize_writes_what_text_of_parse_writes(value: float) -> None:
    try:
        expected = decimals.text(decimals.parse(value))
    except decimals.InvalidDecimal:
        with pytest.raises(decimals.InvalidDecimal):
            decimals.normalize(value)
        return
    assert decimals.normalize(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.125, "0.125"), (90000.5, "90000.5"), (1.0, "1.0"), (-2.5, "-2.5"), (0.0, "0.0"), (-0.0, "0.0"),
        (1e-07, "0.0000001"), (1e16, "10000000000000000"), (0.1 + 0.2, "0.30000000000000004"),
        (7, "7"), (0, "0"), (-3, "-3"), (10**25, "10000000000000000000000000"),
        ("1.50", "1.50"), (None, None), (True, True),
    ],
)
def test_normalize_table(value: object, expected: object) -> None:
    assert decimals.normalize(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 1e30])
def test_normalize_refuses_what_parse_refuses(value: float) -> None:
    with pytest.raises(decimals.InvalidDecimal):
        decimals.normalize(value)
