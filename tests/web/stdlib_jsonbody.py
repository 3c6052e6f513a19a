"""The stdlib reading of request bodies as web/jsonbody.py did it before msgspec (main at 18d9bbd), kept as an oracle.

tests/web/test_jsonbody_properties.py compares the reader with it on generated bodies:
the same bodies refused, the same documents read (types and digits included). The
code below is that module as it was, its docstring cut to this one.
"""
from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

MAX_DEPTH = 32
MAX_INT_DIGITS = 19  # |n| < 2^63 has at most 19 digits; the exact bound is checked after
INT_LIMIT = 2**63
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class InvalidJson(ValueError):
    """The body is not JSON we accept; the message says why (it names no field)."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidJson(f"duplicate key {json.dumps(key[:40])}")
            seen.add(key)
    return document


def _finite_decimal(text: str) -> Decimal:
    if not math.isfinite(float(text)):  # the rule of the contract: what a double cannot hold is refused
        raise InvalidJson(f"number {text[:40]} is out of range")
    try:
        return Decimal(text)
    except ArithmeticError:  # InvalidOperation: an exponent past Decimal's (1e-9999999999999999999 is 0.0 as a double)
        raise InvalidJson(f"number {text[:40]} is out of range") from None


def _bounded_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) <= MAX_INT_DIGITS:
        number = int(text)
        if -INT_LIMIT < number < INT_LIMIT:
            return number
    raise InvalidJson(f"integer {text[:40]}{'...' if len(text) > 40 else ''} is out of range (64 bits)")


def _refuse_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not a JSON number")


def parse_json_body(body: bytes) -> Any:
    """The document in `body`; InvalidJson when it breaks any rule above."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        document = json.loads(
            text, object_pairs_hook=_unique_object, parse_float=_finite_decimal, parse_int=_bounded_int,
            parse_constant=_refuse_constant,
        )
    except RecursionError:
        raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels") from None
    except InvalidJson:
        raise
    except ValueError as exc:  # json.JSONDecodeError and the like
        raise InvalidJson(str(exc)) from None
    _check_tree(document)
    return document


def _check_tree(document: Any) -> None:
    """Depth and strings, walked without recursion (the parser above recursed into every level)."""
    pending: list[tuple[Any, int]] = [(document, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                for key in value:
                    _check_text(key)
                pending.extend((item, depth + 1) for item in value.values())
            else:
                pending.extend((item, depth + 1) for item in value)


def _check_text(text: str) -> None:
    found = _UNSTORABLE.search(text)
    if found is not None:
        what = "U+0000" if found[0] == "\x00" else "a lone surrogate"
        raise InvalidJson(f"a string holds {what} (\\u{ord(found[0]):04x}), which cannot be stored")
