"""Quantities, prices and money on the wire: decimal strings, in one format (CONTRACT §4).

A JSON number is a binary double to most readers (JavaScript, orjson, Go's
encoding/json): `0.1 + 0.2` arrives as 0.30000000000000004, and a quantity of
0.20392143 may be shown as 0.20392143000000004. So the bus and every JSON answer
carry these fields as strings, in plain notation (`"0.00000010"`, never
`"1.0E-7"`), which a reader parses into its own decimal type and gets exactly
what the ledger holds.

- `text(Decimal)` is the one formatter (trailing zeros kept: they say the step).
- `PATTERN` is what a field's string must match: an optional minus, at most
  MAX_INTEGER_DIGITS digits, optionally a point and 1..MAX_FRACTION_DIGITS
  digits. So it is finite (no `NaN`, `Infinity`, exponent) and bounded.
- Plain publishers (CONTRACT §2) may still send msgpack numbers: the schema
  accepts a finite int or float too, and the streamer turns it into a string at
  its boundary (`normalize`: a float's shortest round-trip digits), so browsers
  only ever see strings.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

MAX_INTEGER_DIGITS = 24
MAX_FRACTION_DIGITS = 24
PATTERN = rf"^-?[0-9]{{1,{MAX_INTEGER_DIGITS}}}(\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?\Z"
_PATTERN = re.compile(PATTERN)
NUMBER_LIMIT = 10**MAX_INTEGER_DIGITS  # a number beyond this is refused like a too long string


class InvalidDecimal(ValueError):
    """A text that is not a decimal of the wire's format."""


def text(value: Decimal) -> str:
    """The wire form of a finite Decimal: plain notation, no exponent, `0` never negative."""
    if not value.is_finite():
        raise InvalidDecimal(f"{value} is not a finite decimal")
    if value.is_zero():
        value = abs(value)
    return format(value, "f")


def optional_text(value: Decimal | None) -> str | None:
    """`text`, keeping None."""
    return None if value is None else text(value)


def parse(wire: str | int | float) -> Decimal:
    """The Decimal of a wire value (a string of PATTERN, or a number a plain publisher sent)."""
    if type(wire) is str:
        if _PATTERN.match(wire) is None:
            raise InvalidDecimal(f"{wire[:40]!r} is not a decimal of at most {MAX_INTEGER_DIGITS} digits")
        return Decimal(wire)
    if type(wire) is int:
        return Decimal(wire)
    if type(wire) is float and abs(wire) < NUMBER_LIMIT:  # NaN fails the comparison
        return Decimal(repr(wire))  # the shortest digits that read back as this float
    raise InvalidDecimal(f"{wire!r:.40} is not a decimal")


def normalize(value: Any) -> Any:
    """A number turned into its wire string; anything else (a string, None) as it is.

    The same string as `text(parse(value))`, without the Decimal where it is not needed (the
    streamer's hot path for a plain publisher's numbers, 2 per bench event): a finite nonzero
    float whose shortest repr has no exponent is that repr already, an int in bounds its str.
    """
    kind = type(value)
    if kind is float:
        if value and abs(value) < NUMBER_LIMIT:
            digits = repr(value)
            if "e" not in digits:
                return digits
        return text(parse(value))
    if kind is int:
        return str(value) if -NUMBER_LIMIT < value < NUMBER_LIMIT else text(parse(value))
    return value
