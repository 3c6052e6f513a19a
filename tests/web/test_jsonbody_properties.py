"""web/jsonbody.py against the stdlib reading it replaced (tests/web/stdlib_jsonbody.py): the same answer on any body.

Bodies: hostile documents (tests/hostile.py: repeated keys, trap numbers, surrogates and
NUL in strings), the same with a few bytes changed (a quote, a backslash, a colon, a
bracket, a digit... where the reader's shortcuts look), and 64 KiB bodies of the
shapes that cost the most (wide, deep, many keys, numbers, escapes) with at most one
fault at a random place. The same bodies are refused, the same documents read, types
and digits included; for a body with exactly one fault, with the same words.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from tests.hostile import HOSTILE_SETTINGS, broken_bodies, json_values, render, shown_short
from tests.hostile_json import hostile_json_bodies
from tests.web import stdlib_jsonbody
from web import jsonbody


def typed(value: Any) -> Any:
    """`value` with every scalar's type beside it and a Decimal as its digits, so that 1, 1.0 and True differ."""
    if isinstance(value, dict):
        return ("dict", [(key, typed(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("list", [typed(item) for item in value])
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    return (type(value).__name__, value)


def answer(read: Any, body: bytes) -> tuple[str, Any]:
    """("read", the typed document) or ("refused", the message)."""
    try:
        return "read", typed(read(body))
    except ValueError as refused:
        return "refused", str(refused)


def same_answer(body: bytes, same_words: bool = False) -> None:
    new, old = answer(jsonbody.parse_json_body, body), answer(stdlib_jsonbody.parse_json_body, body)
    assert new[0] == old[0], (shown_short(body), new, old)
    if new[0] == "read" or same_words:
        assert new == old, shown_short(body)


documents = json_values.map(lambda value: render(value).encode("utf-8", "surrogatepass"))
TOUCHY = [*b'"\\:,[]{}0123456789eE.-+ u', 0, 0x7F, 0xC3, 0xFF]
edits = st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["insert", "replace", "delete"]), st.sampled_from(TOUCHY)),
                 min_size=1, max_size=3)


def edited(body: bytes, changes: list[tuple[int, str, int]]) -> bytes:
    """`body` with a few bytes inserted, replaced or deleted (positions taken modulo its length)."""
    data = bytearray(body)
    for position, action, byte in changes:
        at = position % (len(data) + 1)
        if action == "insert":
            data[at:at] = bytes([byte])
        elif at < len(data):
            data[at:at + 1] = bytes([byte]) if action == "replace" else b""
    return bytes(data)


@HOSTILE_SETTINGS
@given(body=st.one_of(documents, broken_bodies))
@example(body=b'{"a": 1, "\\u0061": 2}')
@example(body=b'{"t": "\\u003a", "k": 1, "k": 2}')
@example(body=b'["\\\\\\u0000", "\\\\u0000"]')
def test_a_hostile_document_gets_the_answer_the_stdlib_reading_gave(body: bytes) -> None:
    same_answer(body)


@HOSTILE_SETTINGS
@given(body=documents, changes=edits)
def test_a_document_with_a_few_bytes_changed_gets_the_answer_the_stdlib_reading_gave(
    body: bytes, changes: list[tuple[int, str, int]]
) -> None:
    same_answer(edited(body, changes))


@HOSTILE_SETTINGS
@given(body=hostile_json_bodies())
def test_a_64_kib_body_with_at_most_one_fault_gets_the_same_answer_in_the_same_words(body: bytes) -> None:
    same_answer(body, same_words=True)
