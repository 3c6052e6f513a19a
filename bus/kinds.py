"""Kinds of setting values: what a flag's or variable's text must be, and the value it becomes.

A kind is a callable (an argparse `type`) that raises ArgumentTypeError with the
line users see, `expected an integer 0..65535, got 'abc'`; bus/process.py puts
the flag or variable name in front. Kinds about another package live there
(`store.db.sqlalchemy_url`).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Generic, TypeVar

T = TypeVar("T")

# What int(), float() and Decimal() accept minus their surprises: ASCII digits only (they read "٣" as 3 and
# "0_3" as 3, so `delete-strategy --strategy 0_3` deleted strategy 3), no words (nan, inf), no underscores.
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*\Z")
_NUMBER = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*\Z")


def _ascii_int(text: str) -> int:
    if _INTEGER.match(text) is None:
        raise ValueError(text)
    return int(text)


def _ascii_number(text: str) -> str:
    if _NUMBER.match(text) is None:
        raise ValueError(text)
    return text.strip()


@dataclass(frozen=True)
class Kind(Generic[T]):
    """What a setting's text must be (`expected`, for error lines) and how it becomes a value."""

    expected: str
    convert: Callable[[str], T]
    metavar: str | None = None
    shown: Callable[[str], str] = repr  # how an error line quotes a bad value (a URL's password is masked)

    def __call__(self, text: str) -> T:
        try:
            return self.convert(text)
        except (ValueError, ArithmeticError):
            raise argparse.ArgumentTypeError(f"expected {self.expected}, got {self.shown(text)}") from None


def _bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    def convert(text: str) -> int:
        value = _ascii_int(text)
        if value < low or (high is not None and value > high):
            raise ValueError(text)
        return value

    return convert


def _bounded_float(low: float, *, inclusive: bool) -> Callable[[str], float]:
    def convert(text: str) -> float:
        value = float(_ascii_number(text))
        if not (low <= value if inclusive else low < value) or value == float("inf"):
            raise ValueError(text)
        return value

    return convert


def _switch_word(text: str) -> bool:
    word = text.strip().lower()
    if word in {"1", "true", "yes", "on"}:
        return True
    if word in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(text)


def _optional_port(text: str) -> int | None:
    if text.strip().lower() in {"", "off", "none"}:
        return None
    return _bounded_int(0, 65535)(text)


def _endpoint(text: str) -> str:
    if re.fullmatch(r"(tcp|ipc)://\S+", text) is None:
        raise ValueError(text)
    return text


def number_range(low: float, high: float) -> Kind[float]:
    """A kind that accepts a finite number from `low` to `high`."""

    def convert(text: str) -> float:
        value = float(_ascii_number(text))
        if not low <= value <= high:
            raise ValueError(text)
        return value

    return Kind(f"a number {low:g}..{high:g}", convert)


def int_range(low: int, high: int) -> Kind[int]:
    """A kind that accepts an integer from `low` to `high`."""
    return Kind(f"an integer {low}..{high}", _bounded_int(low, high))


def one_of(*choices: str, normalize: Callable[[str], str] = str) -> Kind[str]:
    """A kind that accepts only `choices` (after `normalize`, e.g. str.upper)."""

    def convert(text: str) -> str:
        if normalize(text) not in choices:
            raise ValueError(text)
        return normalize(text)

    return Kind(f"one of {', '.join(choices)}", convert, metavar="{" + ",".join(choices) + "}")


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(_ascii_number(text))
    except InvalidOperation:
        raise ValueError(text) from None


def _positive_decimal(text: str) -> Decimal:
    value = _decimal(text)
    if not value.is_finite() or value <= 0:
        raise ValueError(text)
    return value


text = Kind("text", str)
integer = Kind("an integer", _ascii_int)
number = Kind("a number", lambda text: float(_ascii_number(text)))
positive_decimal = Kind("a decimal number > 0", _positive_decimal)  # money: its exact digits (store/money.py)
positive_int = Kind("an integer >= 1", _bounded_int(1))
non_negative_int = Kind("an integer >= 0", _bounded_int(0))
tcp_port = Kind("an integer 0..65535", _bounded_int(0, 65535))
optional_port = Kind("an integer 0..65535 or off", _optional_port)
positive_float = Kind("a finite number > 0", _bounded_float(0.0, inclusive=False))
non_negative_float = Kind("a finite number >= 0", _bounded_float(0.0, inclusive=True))
switch_word = Kind("one of 1, true, yes, on, 0, false, no, off", _switch_word)
zmq_endpoint = Kind("a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)", _endpoint)
log_level = one_of("DEBUG", "INFO", "WARNING", "ERROR", normalize=str.upper)
