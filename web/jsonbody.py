"""Strict JSON for request bodies, the one reading both apps use (webhook signals, login, admin API).

A body is refused with InvalidJson (a ValueError whose message says why) when:
- it is not UTF-8, or not JSON, or uses NaN/Infinity;
- an object repeats a key, at any depth: a proxy or WAF in front may check the
  first `"token"` while a parser keeping the last would act on the second;
- it nests deeper than MAX_DEPTH;
- a number is not a finite double or is an integer beyond 64 bits (1e999 reads
  as inf; an int of 4,000 digits cannot become a float);
- a string, key or value, holds a lone surrogate ("\\ud800" is not Unicode: it
  cannot be encoded to UTF-8, hashed or stored) or U+0000 (PostgreSQL text
  cannot hold it; no field has a use for it).

A number with a fraction or an exponent is read as a `Decimal` of exactly its
digits (`0.1` is Decimal('0.1'), never the double 0.1000000000000000055...):
quantities and prices are exact decimals (store/money.py). Integers stay ints.

How a hostile body stays cheap (docs/benchmarks.md, "Hostile JSON bodies": the
stdlib reading with its Python hooks spent up to 28 ms of a webhook's CPU on one
64 KiB body, this one 5): msgspec decodes in one C pass, `Decimal` itself as its
float_hook (no Python frame per number), and refuses by itself what is not JSON,
not UTF-8 or a lone surrogate. The other rules are checked on the text with
C-speed operations (count, replace, split, translate, regular expressions, C
functions mapped over the numbers), each only when a cheap look says it may
matter: integers where 19 digits follow one another, doubles where a 3-digit
exponent or 210 digits appear, nesting past MAX_DEPTH brackets, U+0000 where
`\\u0000` is written, a repeated key when the colons written outnumber the keys read.
A refusal says why in the stdlib reading's words (a body breaking several rules may
be refused for another one than the first in its text, and where several keys
repeat, another one may be named). Why not orjson (the codebase's encoder): it
keeps the last of duplicate keys without a word, and has no hook for Decimal.
"""

from __future__ import annotations

import gc
import json
import math
import operator
import re
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from itertools import compress, repeat
from typing import Any

import msgspec

MAX_DEPTH = 32
MAX_INT_DIGITS = 19  # |n| < 2^63 has at most 19 digits; the exact bound is checked after
INT_LIMIT = 2**63
# A body's decoding makes up to ~32,000 containers: the cyclic GC would run its young collections ~45 times
# meanwhile, and its older ones over the process's whole heap (docs/benchmarks.md: the deep body's webhook
# CPU 13.2 -> 3.9 ms with the pause).
GC_PAUSE_BYTES = 4096

_DECODER = msgspec.json.Decoder(float_hook=Decimal)
_ENCODER = msgspec.json.Encoder()
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Written escapes, searched in the reversed text (a literal start is a fast search): `\u0000` after a backslash
# run of even length is U+0000, after an odd one it is a backslash and then text (`\\u0000`).
_NUL_ESCAPE = re.compile(rb"0000u\\(?:\\\\)*(?!\\)")
_COLON_ESCAPE = re.compile(rb"[aA]300u\\(?:\\\\)*(?!\\)")
# Where a number may break a rule, seen in the body with every digit written as 0 and E as e.
_AS_ZERO = bytes.maketrans(b"123456789E", b"000000000e")
_LONG_INTEGER = b"0" * MAX_INT_DIGITS
# A double overflows only past 1.8e308: its integer digits plus its exponent exceed 308, so one of them is >= 100 / 210.
_BIG_EXPONENTS, _MANY_DIGITS = (b"0e000", b"0e+000"), b"0" * 210
_SEPARATORS = bytes.maketrans(b'[]{},:"', b"       ")
_PADDED = operator.methodcaller("rjust", 20, b"0")
_INT_LIMIT_PADDED = str(INT_LIMIT).encode().rjust(20, b"0")
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def _nested_at_most(levels: int) -> bytes:
    """A regular expression of the balanced brackets nested at most `levels` deep (possessive: linear, never backtracks)."""
    return b"" if levels == 0 else rb"(?:\[" + _nested_at_most(levels - 1) + rb"\])*+"


# Brackets only: a 64 KiB body's nesting is matched in ~0.4 ms (32 passes of bytes.replace: 4-7 ms, a walk: ~5 ms).
_AT_MOST_MAX_DEPTH = re.compile(_nested_at_most(MAX_DEPTH))
# Stand-ins for escaped backslashes and quotes while a text is cut at its quotes: raw control bytes are never in JSON.
_BACKSLASH, _QUOTE = b"\x00\x01", b"\x00\x02"


class InvalidJson(ValueError):
    """The body is not JSON we accept; the message says why (it names no field)."""


def parse_json_body(body: bytes) -> Any:
    """The document in `body`; InvalidJson when it breaks any rule above."""
    try:
        document = _decode(body)
    except (msgspec.DecodeError, RecursionError, ArithmeticError) as exc:  # ValidationError is a DecodeError
        raise _refusal(body, exc) from None
    as_zero = body.translate(_AS_ZERO)
    may_overflow = _MANY_DIGITS in as_zero or any(exponent in as_zero for exponent in _BIG_EXPONENTS)
    numbers = _LONG_INTEGER in as_zero or may_overflow
    nested = body.count(b"[") + body.count(b"{") > MAX_DEPTH
    if numbers or nested:
        outside = _outside_strings(body)
        if numbers:
            _check_numbers(_numbers(outside), may_overflow)
        if nested and _too_deep(outside):
            raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels")
    if _repeats_a_key(body, document):
        raise InvalidJson(f"duplicate key {json.dumps(_a_repeated_key(body, document)[:40])}")
    if b"\\u0000" in body and _NUL_ESCAPE.search(body[::-1]):
        raise InvalidJson("a string holds U+0000 (\\u0000), which cannot be stored")
    return document


def _decode(body: bytes) -> Any:
    if len(body) < GC_PAUSE_BYTES or not gc.isenabled():  # the streamer may run with the GC off (streamer/gcpolicy.py)
        return _DECODER.decode(body)
    gc.disable()  # process-wide: another thread's allocations meanwhile are collected when it is enabled again
    try:
        return _DECODER.decode(body)
    finally:
        gc.enable()


def _outside_strings(body: bytes) -> bytes:
    """The body with every string emptied (`"a:b"` -> `""`): numbers, literals, punctuation and brackets.

    Exact for a body msgspec read: a backslash is only ever inside a string, and once
    the escaped backslashes are gone, a quote after a backslash is an escaped one.
    """
    if b'"' not in body:
        return body
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b'""'.join(body.split(b'"')[::2])


def _numbers(outside: bytes) -> tuple[list[bytes], list[bytes]]:
    """The words of `outside` (a text of _outside_strings), the body's numbers as written, and the same without signs."""
    for literal in (b"true", b"false", b"null"):
        outside = outside.replace(literal, b" ")
    spaced = outside.translate(_SEPARATORS)
    return spaced.split(), spaced.translate(None, b"-").split()  # a sign is always inside a number: words stay aligned


def _check_numbers(numbers: tuple[list[bytes], list[bytes]], may_overflow: bool) -> None:
    """Integers within 64 bits, and (if `may_overflow`) other numbers within a double's range.

    Checked by C functions mapped over the numbers' texts: no Python frame per number.
    """
    signed, unsigned = numbers
    is_integer = list(map(bytes.isdigit, unsigned))
    # Digits padded to 20 sort as their values (no leading zero in JSON; 20 digits and more are past 2^63).
    too_big = list(map(_INT_LIMIT_PADDED.__le__, map(_PADDED, compress(unsigned, is_integer))))
    if True in too_big:
        text = list(compress(signed, is_integer))[too_big.index(True)]
        raise InvalidJson(f"integer {text[:40].decode()}{'...' if len(text) > 40 else ''} is out of range (64 bits)")
    if may_overflow:
        others = list(compress(signed, map(operator.not_, is_integer)))
        values = list(map(float, others))  # the rule: what a double cannot hold is refused
        infinite = [values.index(value) for value in (math.inf, -math.inf) if value in values]
        if infinite:
            raise InvalidJson(f"number {others[min(infinite)][:40].decode()} is out of range")


def _too_deep(outside: bytes) -> bool:
    """Whether the brackets of `outside` (JSON, strings emptied) nest deeper than MAX_DEPTH."""
    return _AT_MOST_MAX_DEPTH.fullmatch(outside.translate(_SQUARE, _NOT_BRACKETS)) is None


def _repeats_a_key(body: bytes, document: Any) -> bool:
    """Whether some object repeats a key: more pairs written than keys read, counted by their colons.

    The body's colons are its pairs' plus those written inside strings; the document
    encoded again has one per key read plus every colon its strings hold, the
    escaped ones (`\\u003a`) included. The difference, with those escapes, is the
    count of pairs a repeated key dropped.
    """
    colons = body.count(b":")
    if not colons or (type(document) is dict and colons == len(document) and body.count(b"{") == 1):
        return False  # no object, or one whose every colon is a key read
    escaped = len(_COLON_ESCAPE.findall(body[::-1])) if b"\\u003" in body else 0
    return colons + escaped > _ENCODER.encode(document).count(b":")


def _a_repeated_key(body: bytes, document: Any) -> str:
    """A key some object of `body` repeats: one written more often than the document (which keeps one of each) has it.

    When one key is repeated, it is the one the stdlib reading named; when several
    are, the most repeated of a single object, else the first written of them.
    """
    written = _keys_written(body)
    if _outside_strings(body).count(b"{") == 1:  # one object: its most written key is repeated
        return _text(Counter(_keys(written, written)).most_common(1)[0][0])
    read = _keys_written(_ENCODER.encode(document))
    keys = _keys(written, written + read)
    repeated = {key for key, _ in Counter(keys).items() - Counter(_keys(read, written + read)).items()}
    return _text(next((key for key in keys if key in repeated), b""))


def _keys(keys: bytes, all_keys: bytes) -> Sequence[bytes | str]:
    """The keys of `_keys_written`: as written, or decoded when some of `all_keys` (to compare with) holds an escape."""
    if b"\\" in all_keys:
        decoded: list[str] = _DECODER.decode(b'["' + keys + b'"]')
        return decoded
    return keys.split(b'","')  # no escape: each key's text is its UTF-8, as msgspec writes it again


def _text(key: bytes | str) -> str:
    return key if isinstance(key, str) else key.decode()


def _keys_written(text: bytes) -> bytes:
    """Every key of JSON `text` as written, in order, between `","` (what a JSON array of them holds inside)."""
    pieces = text.replace(b"\\\\", _BACKSLASH).replace(b'\\"', _QUOTE).split(b'"')
    after = pieces[2::2]  # what follows each string: a key's starts with its colon
    if any(space + b":" in text for space in (b" ", b"\t", b"\n", b"\r")):
        after = list(map(bytes.lstrip, after))
    keys = b'","'.join(compress(pieces[1::2], map(bytes.startswith, after, repeat(b":"))))
    return keys.replace(_BACKSLASH, b"\\\\").replace(_QUOTE, b'\\"')


def _refusal(body: bytes, exc: Exception) -> InvalidJson:
    """Why msgspec refused `body`, in the words the stdlib reading used (rare: this may cost more than a read)."""
    if isinstance(exc, RecursionError):
        return InvalidJson(f"nested deeper than {MAX_DEPTH} levels")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as bad:
        return InvalidJson(f"not UTF-8 ({bad.reason} at byte {bad.start})")
    if isinstance(exc, msgspec.ValidationError | ArithmeticError):
        # msgspec stopped at a number past a limit (an integer of over 4,300 digits, an exponent past
        # Decimal's): what it read before is JSON, so that number is the first such word outside strings.
        numbers = _numbers(_outside_strings(body))
        if isinstance(exc, ArithmeticError):
            return InvalidJson(f"number {_far_exponent(numbers[0])[:40]} is out of range")
        try:
            _check_numbers(numbers, may_overflow=False)
        except InvalidJson as refused:
            return refused
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        return InvalidJson(f"nested deeper than {MAX_DEPTH} levels")
    except ValueError as bad:  # json.JSONDecodeError, and InvalidJson for NaN and Infinity
        return bad if isinstance(bad, InvalidJson) else InvalidJson(str(bad))
    unstorable = _first_unstorable(document)  # the stdlib reads lone surrogates, which msgspec refuses
    return InvalidJson(unstorable or f"not JSON we accept ({exc})")


def _far_exponent(numbers: list[bytes]) -> str:
    """The first number Decimal refuses: its exponent has 19 digits or more, so it is 20 characters long at least."""
    for number in compress(numbers, map((20).__le__, map(len, numbers))):
        try:
            Decimal(number.decode())
        except ArithmeticError:
            return number.decode()
    return "with an exponent past Decimal's"


def _refuse_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not a JSON number")


def _first_unstorable(document: Any) -> str | None:
    """What is wrong with the first string (key or value) holding a lone surrogate or U+0000, walked without recursion."""
    pending = [document]
    while pending:
        value = pending.pop()
        texts = [value] if isinstance(value, str) else list(value) if isinstance(value, dict) else []
        for text in texts:
            found = _UNSTORABLE.search(text)
            if found is not None:
                what = "U+0000" if found[0] == "\x00" else "a lone surrogate"
                return f"a string holds {what} (\\u{ord(found[0]):04x}), which cannot be stored"
        if isinstance(value, dict | list):
            pending.extend(value.values() if isinstance(value, dict) else value)
    return None
