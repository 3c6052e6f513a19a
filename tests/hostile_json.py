"""64 KiB JSON bodies of the shapes that cost a reader the most, for property tests (bench/jsonbodies.py measures them).

Wide, deep (at the deepest allowed), many keys, numbers, escapes; each with at most
one fault at a random place: a number past a limit, a repeated key, nesting one
level too deep, an unstorable string, broken grammar or UTF-8.
"""

from __future__ import annotations

from hypothesis import strategies as st

from tests.hostile import shown_short

MAX_JSON_BODY = 64 * 1024
# Array items, each a shape repeated: numbers, strings, escapes, objects, nesting at the deepest allowed.
ARRAY_ITEMS = [b"1", b"0.1", b"1E+300", b"-9223372036854775807", b'"ab"', b'"x:y"', b'"\\u00e9\\ud83d\\ude00"', b'"\\\\"',
               b'{"a":0}', b'{"a:b":"c:d","e":[1]}', b"[" * 31 + b"]" * 31, b"[]", b"true", b"null"]
# One fault each, as an array item: what the reader refuses (a number, a key, nesting, a string, the grammar, UTF-8).
ARRAY_FAULTS = [b"1e999", b"-1E+400", b"9223372036854775808", b"1" * 25, b"[" * 33 + b"]" * 33, b'{"a":0,"a":1}',
                b'{"k":1,"\\u006b":2}', b'"\\u0000"', b'"\\ud800"', b'"\\udc00x"', b"NaN", b"[1,]", b'"\xff"', b"1e-9999999999999999999"]


@st.composite
def hostile_json_bodies(draw: st.DrawFn) -> bytes:
    """A body of about MAX_JSON_BODY bytes at most: one shape repeated in an array or as an object's keys, at most one fault."""
    size = draw(st.integers(64, MAX_JSON_BODY))
    fault = draw(st.one_of(st.none(), st.sampled_from(ARRAY_FAULTS)))
    separator = draw(st.sampled_from([b",", b", ", b" ,\n"]))
    if draw(st.booleans()):
        item = draw(st.sampled_from(ARRAY_ITEMS))
        head, tail, items = b"[", b"]", [item] * max(1, (size - 2) // (len(item) + len(separator)))
    else:
        value = draw(st.sampled_from([b"0", b'"v:w"', b"[1.5]"]))
        head, tail = b"{", b"}"
        items = [b'"k%d":%s' % (n, value) for n in range(max(1, (size - 2) // (10 + len(value))))]
        if fault is not None:
            fault = b'"k0":0' if fault.startswith(b"{") else b'"f":' + fault  # a repeated key, or the fault as a value
    if fault is not None:
        items.insert(draw(st.integers(0, len(items))), fault)
    return shown_short(head + separator.join(items) + tail)
