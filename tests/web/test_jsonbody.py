"""web/jsonbody.py: the strict reading of request bodies, as a table of body → document or refusal."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from web.jsonbody import MAX_DEPTH, InvalidJson, parse_json_body

# (name, body, the refusal's message contains this)
REFUSED = [
    ("not UTF-8", b'{"a": "\xff"}', "not UTF-8"),
    ("not JSON", b'{"a": ', "Expecting value"),
    ("NaN", b"[NaN]", "NaN is not a JSON number"),
    ("a duplicate key", b'{"a": 1, "a": 2}', 'duplicate key "a"'),
    ("a duplicate key nested in a list", b'[{"x": [{"b": 1, "b": 1}]}]', 'duplicate key "b"'),
    ("1e999", b"[1e999]", "out of range"),
    ("-1e999", b"[-1e999]", "out of range"),
    ("an exponent past Decimal's", b"[1e-9999999999999999999]", "out of range"),  # 0.0 as a double
    ("2^63", b"[9223372036854775808]", "out of range (64 bits)"),
    ("-2^63", b"[-9223372036854775808]", "out of range (64 bits)"),
    ("5,000 digits", b"[" + b"9" * 5000 + b"]", "out of range (64 bits)"),
    ("one level too deep", b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested deeper"),
    ("20,000 levels", b"[" * 20000 + b"]" * 20000, "nested deeper"),
    ("20,000 unclosed levels", b'{"a":' * 20000, "nested deeper"),
    ("a lone high surrogate", b'["\\ud800"]', "lone surrogate"),
    ("a lone low surrogate in a key", b'{"\\udc00": 1}', "lone surrogate"),
    ("surrogates in the wrong order", b'["\\ude00\\ud83d"]', "lone surrogate"),
    ("U+0000", b'{"a": "x\\u0000"}', "U+0000"),
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


# (name, body, document)
ACCEPTED = [
    ("an object", b'{"a": 1, "b": [1.5, "x", null, true]}', {"a": 1, "b": [1.5, "x", None, True]}),
    ("the same key in two objects", b'[{"a": 1}, {"a": 2}]', [{"a": 1}, {"a": 2}]),
    ("2^63 - 1 and -(2^63 - 1)", b"[9223372036854775807, -9223372036854775807]", [2**63 - 1, -(2**63 - 1)]),
    ("1e300", b"[1e300]", [Decimal("1e300")]),
    ("a fraction is the Decimal of its digits, not a double", b"[0.1]", [Decimal("0.1")]),
    ("MAX_DEPTH levels", b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, _nested(MAX_DEPTH)),
    ("an escaped surrogate pair", b'["\\ud83d\\ude00"]', ["\U0001f600"]),
    ("other control characters", b'["\\u0001\\t"]', ["\x01\t"]),
]


@pytest.mark.parametrize(("body", "document"), [pytest.param(*case[1:], id=case[0]) for case in ACCEPTED])
def test_a_body_within_the_rules_is_read(body: bytes, document: Any) -> None:
    assert parse_json_body(body) == document
