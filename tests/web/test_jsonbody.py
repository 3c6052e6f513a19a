"""web/jsonbody.py: the strict reading of request bodies, as a table of body → document or refusal.

Every rule of CONTRACT section 5 has rows here, and so has every shortcut the reader
takes to keep a hostile body cheap: where a check runs only when a cheap look at the
text says it may matter (a duplicate key only when colons outnumber the keys read,
64-bit integers only where 19 digits follow one another, ...), a row puts the trap
just past that look (a colon inside a string, an escaped colon, a key repeated as
an escape, digits inside a string or an exponent).
"""

from __future__ import annotations

import gc
from decimal import Decimal
from typing import Any

import pytest

from web.jsonbody import MAX_DEPTH, InvalidJson, parse_json_body

DEEPEST = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH

# (name, body, the refusal's message contains this)
REFUSED = [
    # not UTF-8, not JSON
    ("not UTF-8", b'{"a": "\xff"}', "not UTF-8"),
    ("an overlong NUL", b'["\xc0\x80"]', "not UTF-8"),
    ("a surrogate encoded in UTF-8", b'["\xed\xa0\x80"]', "not UTF-8"),
    ("past U+10FFFF", b'["\xf4\x90\x80\x80"]', "not UTF-8"),
    ("a truncated sequence", b'["\xe2\x82"]', "not UTF-8"),
    ("UTF-8 after the document", b"[1]\xc3\xa9", "Extra data"),
    ("not JSON", b'{"a": ', "Expecting value"),
    ("empty", b"", "Expecting value"),
    ("a BOM", b"\xef\xbb\xbf{}", "BOM"),
    ("a trailing comma", b"[1,]", "Expecting value"),
    ("a trailing comma in an object", b'{"a": 1,}', "Expecting property name"),
    ("two documents", b'{"a": 1}{"b": 2}', "Extra data"),
    ("a form feed as space", b"\x0c[1]", "Expecting value"),
    ("a raw tab in a string", b'["\t"]', "Invalid control character"),
    ("an unknown escape", b'["\\x"]', "Invalid \\escape"),
    ("a leading zero", b"[01]", "Expecting ','"),
    ("a bare fraction", b"[.5]", "Expecting value"),
    ("a dot without digits", b"[1.]", "Expecting ','"),
    ("a plus sign", b"[+1]", "Expecting value"),
    ("single quotes", b"{'a': 1}", "Expecting property name"),
    ("NaN", b"[NaN]", "NaN is not a JSON number"),
    ("Infinity", b'{"a": Infinity}', "Infinity is not a JSON number"),
    ("-Infinity", b"[-Infinity]", "-Infinity is not a JSON number"),
    # a key repeated in one object
    ("a duplicate key", b'{"a": 1, "a": 2}', 'duplicate key "a"'),
    ("a duplicate key nested in a list", b'[{"x": [{"b": 1, "b": 1}]}]', 'duplicate key "b"'),
    ("the empty key twice", b'{"": 1, "": 2}', 'duplicate key ""'),
    ("a key repeated as an escape", b'{"a": 1, "\\u0061": 2}', 'duplicate key "a"'),
    ("a key with an escaped quote twice", b'{"a\\"": 1, "a\\"": 2}', 'duplicate key "a\\""'),
    ("a key of a backslash twice", b'{"\\\\": 1, "\\\\": 2}', 'duplicate key "\\\\"'),
    ("a duplicate among values holding colons", b'{"a": ":", "b": "x:y", "a": 1}', 'duplicate key "a"'),
    ("a duplicate beside an escaped colon", b'{"t": "\\u003a", "k": 1, "k": 2}', 'duplicate key "k"'),
    ("a duplicate beside an escaped colon, upper case", b'{"t": "\\u003A", "k": 1, "k": 2}', 'duplicate key "k"'),
    ("a duplicate beside a colon in a key", b'{"a:b": 1, "c": 1, "c": 2}', 'duplicate key "c"'),
    ("a duplicate in the second of two objects", b'[{"a": 1}, {"b": 1, "b": 2}]', 'duplicate key "b"'),
    ("a duplicate after a value ending in a backslash", b'{"a": "\\\\", "a": 1}', 'duplicate key "a"'),
    ("a duplicate inside a value of the same key", b'{"a": {"a": 1, "a": 2}}', 'duplicate key "a"'),
    ("the last of 2,000 keys repeats the first",
     b"{" + b",".join(b'"k%d": 0' % n for n in range(2000)) + b', "k0": 1}', 'duplicate key "k0"'),
    ("the last of 2,000 objects repeats a key",
     b"[" + b",".join([b'{"a": 0}'] * 2000) + b', {"a": 0, "a": 1}]', 'duplicate key "a"'),
    # numbers a double cannot hold, or past Decimal's exponent
    ("1e999", b"[1e999]", "number 1e999 is out of range"),
    ("-1e999", b"[-1e999]", "number -1e999 is out of range"),
    ("1E+999", b"[1E+999]", "number 1E+999 is out of range"),
    ("1e309", b"[1e309]", "number 1e309 is out of range"),
    ("1.8e308", b"[1.8e308]", "number 1.8e308 is out of range"),
    ("an exponent with leading zeros", b"[1e000400]", "number 1e000400 is out of range"),
    ("310 digits and a fraction", b"[1" + b"0" * 309 + b".5]", "is out of range"),
    ("210 digits and a two-digit exponent", b"[" + b"9" * 210 + b"e99]", "is out of range"),
    ("a small fraction with a big exponent", b"[0.001e312]", "number 0.001e312 is out of range"),
    ("an exponent past Decimal's", b"[1e-9999999999999999999]", "number 1e-9999999999999999999 is out of range"),
    ("1e999 after 1,000 finite numbers", b"[" + b"1E+300," * 1000 + b"1e999]", "number 1e999 is out of range"),
    ("1e999 in a key's value", b'{"p": {"q": [1e999]}}', "number 1e999 is out of range"),
    ("1e999 after a string ending in an escaped backslash", b'["\\\\", 1e999]', "number 1e999 is out of range"),
    # integers beyond 64 bits
    ("2^63", b"[9223372036854775808]", "integer 9223372036854775808 is out of range (64 bits)"),
    ("-2^63", b"[-9223372036854775808]", "integer -9223372036854775808 is out of range (64 bits)"),
    ("20 digits", b"[10000000000000000000]", "integer 10000000000000000000 is out of range (64 bits)"),
    ("2^64", b'{"a": 18446744073709551616}', "out of range (64 bits)"),
    ("4,300 digits", b"[" + b"9" * 4300 + b"]", "out of range (64 bits)"),
    ("5,000 digits", b"[" + b"9" * 5000 + b"]", "out of range (64 bits)"),
    ("2^63 after 1,000 in range", b"[" + b"9223372036854775807," * 1000 + b"9223372036854775808]", "out of range (64 bits)"),
    ("2^63 after the same digits in a string", b'["9223372036854775808", 9223372036854775808]', "out of range (64 bits)"),
    ("2^63 after a string holding an escaped quote", b'["\\"", 9223372036854775808]', "out of range (64 bits)"),
    ("2^63 after a string ending in an escaped backslash", b'["\\\\", 9223372036854775808]', "out of range (64 bits)"),
    ("2^63 after a string of an escaped backslash and quote", b'["\\\\\\"", -9223372036854775808]', "out of range (64 bits)"),
    # nesting
    ("one level too deep", b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested deeper"),
    ("objects one level too deep", b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), "nested deeper"),
    ("mixed one level too deep", b'[{"a":' * 16 + b"[1]" + b"}]" * 16, "nested deeper"),
    ("one level too deep after wide siblings", b"[" + b"[1]," * 500 + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"]", "nested deeper"),
    ("one level too deep with brackets in strings", b'["[[[[", ' + DEEPEST + b', "]]]]"]', "nested deeper"),
    ("one level too deep after an escaped quote", b'["\\"]", ' + DEEPEST + b"]", "nested deeper"),
    ("1,000 levels", b"[" * 1000 + b"]" * 1000, "nested deeper"),
    ("20,000 levels", b"[" * 20000 + b"]" * 20000, "nested deeper"),
    ("20,000 unclosed levels", b'{"a":' * 20000, "nested deeper"),
    # strings that cannot be stored
    ("a lone high surrogate", b'["\\ud800"]', "lone surrogate"),
    ("a lone high surrogate, upper case", b'["\\uD800"]', "lone surrogate"),
    ("a lone low surrogate in a key", b'{"\\udc00": 1}', "lone surrogate"),
    ("surrogates in the wrong order", b'["\\ude00\\ud83d"]', "lone surrogate"),
    ("a high surrogate before a letter", b'["\\ud800x"]', "lone surrogate"),
    ("two high surrogates", b'["\\ud800\\ud800"]', "lone surrogate"),
    ("a high surrogate before an escaped letter", b'["\\ud800\\u0041"]', "lone surrogate"),
    ("U+0000", b'{"a": "x\\u0000"}', "U+0000"),
    ("U+0000 in a key", b'{"\\u0000": 1}', "U+0000"),
    ("U+0000 after an escaped backslash", b'["\\\\\\u0000"]', "U+0000"),
    ("U+0000 after 1,000 strings", b"[" + b'"a",' * 1000 + b'"\\u0000"]', "U+0000"),
]


@pytest.mark.parametrize(("body", "reason"), [pytest.param(*case[1:], id=case[0]) for case in REFUSED])
def test_a_body_breaking_a_rule_is_refused_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidJson) as refused:
        parse_json_body(body)
    assert reason in str(refused.value)


def _nested(levels: int) -> list[Any]:
    document: list[Any] = []
    for _ in range(levels - 1):
        document = [document]
    return document


def _nested_objects(levels: int) -> dict[str, Any]:
    document: dict[str, Any] = {"a": 1}
    for _ in range(levels - 1):
        document = {"a": document}
    return document


# (name, body, document)
ACCEPTED = [
    ("an object", b'{"a": 1, "b": [1.5, "x", null, true]}', {"a": 1, "b": [1.5, "x", None, True]}),
    ("the contract's signal", b'{"group_name": "btc-trend", "token": "t", "symbol": "BTC/USDT", "side": "buy",'
     b' "order_type": "LIMIT", "price": "90000", "qty_per": 5}',
     {"group_name": "btc-trend", "token": "t", "symbol": "BTC/USDT", "side": "buy", "order_type": "LIMIT",
      "price": "90000", "qty_per": 5}),
    ("spaces around everything", b' \t\r\n{ "a" : [ 1 , 2 ] } \n', {"a": [1, 2]}),
    ("a scalar document", b'"text"', "text"),
    ("null", b"null", None),
    ("the same key in two objects", b'[{"a": 1}, {"a": 2}]', [{"a": 1}, {"a": 2}]),
    ("the same key at two depths", b'{"a": {"a": 1}}', {"a": {"a": 1}}),
    ("keys that differ only by an escape", b'{"a": 1, "\\u0062": 2}', {"a": 1, "b": 2}),
    ("colons in values and keys", b'{"a:b": "x:y", "c": ":::", "d": "\\u003a"}', {"a:b": "x:y", "c": ":::", "d": ":"}),
    ("a quote and a backslash in keys", b'{"a\\"": 1, "a\\\\": 2, "a": 3}', {'a"': 1, "a\\": 2, "a": 3}),
    ("2,000 keys", b"{" + b",".join(b'"k%d": %d' % (n, n) for n in range(2000)) + b"}",
     {f"k{n}": n for n in range(2000)}),
    ("2^63 - 1 and -(2^63 - 1)", b"[9223372036854775807, -9223372036854775807]", [2**63 - 1, -(2**63 - 1)]),
    ("-0", b"[-0]", [0]),
    ("big digits in strings", b'["9223372036854775808", "1e999", "99999999999999999999"]',
     ["9223372036854775808", "1e999", "99999999999999999999"]),
    ("19 digits and more in a fraction, an exponent, before a dot", b"[0.12345678901234567890, 1e-0000000000000000001,"
     b" 9223372036854775808.5, 92233720368547758080e-2]",
     [Decimal("0.12345678901234567890"), Decimal("1e-1"), Decimal("9223372036854775808.5"), Decimal("922337203685477580.80")]),
    ("1e300", b"[1e300]", [Decimal("1e300")]),
    ("1e308 and the largest double", b"[1e308, 1.7976931348623157e308, -1.7976931348623157e308]",
     [Decimal("1e308"), Decimal("1.7976931348623157e308"), Decimal("-1.7976931348623157e308")]),
    ("209 digits and a two-digit exponent", b"[" + b"9" * 209 + b"e99]", [Decimal("9" * 209 + "e99")]),
    ("a tiny number: 0.0 as a double, exact as a Decimal", b"[1e-400]", [Decimal("1e-400")]),
    ("a fraction is the Decimal of its digits, not a double", b"[0.1]", [Decimal("0.1")]),
    ("-0.0 and exponents as written", b"[-0.0, 1E5, 1e-0, 5e+3]", [Decimal("-0.0"), Decimal("1E5"), Decimal("1"), Decimal("5e3")]),
    ("MAX_DEPTH levels", DEEPEST, _nested(MAX_DEPTH)),
    ("MAX_DEPTH levels of objects", b'{"a":' * MAX_DEPTH + b"1" + b"}" * MAX_DEPTH, _nested_objects(MAX_DEPTH)),
    ("MAX_DEPTH levels side by side", b"[" + b",".join([b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)] * 50) + b"]",
     [_nested(MAX_DEPTH - 1)] * 50),
    ("brackets in strings do not nest", b'["' + b"[" * 100 + b'", "' + b"{" * 100 + b'"]', ["[" * 100, "{" * 100]),
    ("an escaped surrogate pair", b'["\\ud83d\\ude00"]', ["\U0001f600"]),
    ("the last code point", b'["\\uDBFF\\uDFFF", "\xf4\x8f\xbf\xbf"]', ["\U0010ffff", "\U0010ffff"]),
    ("other control characters", b'["\\u0001\\t"]', ["\x01\t"]),
    ("an escaped backslash before u0000 is text", b'["\\\\u0000"]', ["\\u0000"]),
    ("DEL and non-ASCII as they are", b'["\x7f", "\xc3\xa9"]', ["\x7f", "é"]),
]


@pytest.mark.parametrize(("body", "document"), [pytest.param(*case[1:], id=case[0]) for case in ACCEPTED])
def test_a_body_within_the_rules_is_read(body: bytes, document: Any) -> None:
    assert parse_json_body(body) == document


def test_numbers_are_read_as_their_types() -> None:
    read = parse_json_body(b'[1, 1.0, 1e0, true, "1"]')
    assert [type(value) for value in read] == [int, Decimal, Decimal, bool, str]
    assert str(read[1]) == "1.0"  # the digits as written: quantities keep their scale


@pytest.mark.parametrize("body", [b"[" + b"[1]," * 2000 + b"[1]]", b"[" + b"[" * 20000, b'{"a": 1, "a": 2}' + b" " * 8000],
                         ids=["read", "refused by msgspec", "refused after"])
def test_the_gc_is_as_it_was_after_a_large_body(body: bytes) -> None:
    """The reader pauses the cyclic GC over a large body's decoding: afterwards it is as before, enabled or not."""
    for enabled in (True, False):
        if not enabled:
            gc.disable()
        try:
            try:
                parse_json_body(body)
            except InvalidJson:
                pass
            assert gc.isenabled() == enabled
        finally:
            gc.enable()
