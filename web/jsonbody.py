"""Strict JSON for request bodies, the one reading both apps use (webhook signals, login, admin API).

A body is refused with InvalidJson (a ValueError whose message says why) when:
- it is not UTF-8, or not JSON, or uses NaN/Infinity;
- an object repeats a key, at any depth: a proxy or WAF in front may check the
  first `"token"` while a parser keeping the last would act on the second;
- it nests deeper than MAX_DEPTH (Python's parser would raise RecursionError);
- a number is not a finite double or is an integer beyond 64 bits (1e999 reads
  as inf; an int of 4,000 digits cannot become a float);

A number with a fraction or an exponent is read as a `Decimal` of exactly its
digits (`0.1` is Decimal('0.1'), never the double 0.1000000000000000055...):
quantities and prices are exact decimals (store/money.py). Integers stay ints.
- a string, key or value, holds a lone surrogate ("\\ud800" is not Unicode: it
  cannot be encoded to UTF-8, hashed or stored) or U+0000 (PostgreSQL text
  cannot hold it; no field has a use for it).

Why the stdlib parser and not orjson (the codebase's encoder): orjson keeps the
last of duplicate keys without a word and has no hook to tell. The stdlib
parser with object_pairs_hook and the checks here costs 9.7 µs for a login body
or the contract's webhook example (orjson: 0.3 and 0.4 µs); bodies are at most
64 KiB, and the costliest one measured (32,000 integers) takes 11 ms.
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
