"""The wire schema's bounds, one row per rule: what the broker accepts and what it drops."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from bus import codec, events, exact_decode
from bus.errors import DecodeError, InvalidEvent
from tests.bus.conftest import make_order
from tests.bus.strategies import every_message

ORDER = make_order(1, 2).to_wire()
BATCH = {
    "kind": "order_batch_update", "strategy_id": 2, "user_id": 1, "timestamp": "2024-01-02T03:04:05.000006Z",
    "summaries": [{"order_type": "LIMIT", "created": 2, "cancelled": 0}],
}
CONTROL = events.CleanupStrategyMessage(3, "strategy_deleted", "gone").to_wire()
MAX_ID = 2**63 - 1


def changed(base: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**base, **fields}


def without(base: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k != name}


REJECTED: list[tuple[str, dict[str, Any]]] = [
    ("id zero", changed(ORDER, user_id=0)),
    ("id above 2^63-1", changed(ORDER, strategy_id=MAX_ID + 1)),
    ("id a bool", changed(ORDER, user_id=True)),
    ("id a float", changed(ORDER, user_id=1.0)),
    ("nested id", changed(ORDER, account={"account_id": -1, "name": "a", "exchange": "b"})),
    ("quantity NaN", changed(ORDER, quantity=float("nan"))),
    ("quantity infinite", changed(ORDER, quantity=float("inf"))),
    ("price -infinite", changed(ORDER, price=float("-inf"))),
    ("quantity a string that is not a decimal", changed(ORDER, quantity="1 BTC")),
    ("quantity NaN", changed(ORDER, quantity="NaN")),
    ("quantity in exponent notation", changed(ORDER, quantity="1E-7")),
    ("quantity with 25 integer digits", changed(ORDER, quantity="1" * 25)),
    ("quantity a float beyond the bound", changed(ORDER, quantity=1e30)),
    ("quantity a bool", changed(ORDER, quantity=False)),
    ("empty text", changed(ORDER, symbol="")),
    ("text of 257 characters", changed(ORDER, order_id="é" * 257)),
    ("text as bytes", changed(ORDER, symbol=b"BTC")),
    ("timestamp without Z", changed(ORDER, timestamp="2024-01-02T03:04:05.000006")),
    ("timestamp in milliseconds", changed(ORDER, timestamp="2024-01-02T03:04:05.000Z")),
    ("timestamp with a trailing newline", changed(ORDER, timestamp="2024-01-02T03:04:05.000006Z\n")),
    ("side not a choice", changed(ORDER, side="HOLD")),
    ("side in lower case", changed(ORDER, side="buy")),
    ("status not a choice", changed(ORDER, status="LOST")),
    ("order type not a choice", changed(ORDER, order_type="ICEBERG")),
    ("event type of another kind", changed(ORDER, event_type="position_created")),
    ("suppress_toast missing", without(ORDER, "suppress_toast")),
    ("suppress_toast not a bool", changed(ORDER, suppress_toast=0)),
    ("required field missing", without(ORDER, "symbol")),
    ("required field null", changed(ORDER, symbol=None)),
    ("account not a map", changed(ORDER, account=[1, "a", "b"])),
    ("unknown kind", changed(ORDER, kind="order_exploded")),
    ("kind missing", without(ORDER, "kind")),
    ("batch without summaries", changed(BATCH, summaries=[])),
    ("batch of 17 summaries", changed(BATCH, summaries=BATCH["summaries"] * 17)),
    ("batch entry with nothing done", changed(BATCH, summaries=[{"order_type": "LIMIT", "created": 0, "cancelled": 0}])),
    ("batch count negative", changed(BATCH, summaries=[{"order_type": "LIMIT", "created": -1, "cancelled": 2}])),
    ("disconnect reason not a choice", changed(CONTROL, reason="bored")),
]

ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("ids at the bounds", changed(ORDER, user_id=1, strategy_id=MAX_ID)),
    ("text of 256 characters", changed(ORDER, order_id="é" * 256)),
    ("optional numbers null", changed(ORDER, price=None, stop_price=None, filled_quantity=None)),
    ("optional numbers absent", without(without(ORDER, "price"), "average_price")),
    ("integer quantity", changed(ORDER, quantity=MAX_ID)),
    ("unknown extra keys", changed(ORDER, note={"anything": [1, "two", None]})),
    ("batch of 16 summaries", changed(BATCH, summaries=BATCH["summaries"] * 16)),
    ("batch entry of cancellations only", changed(BATCH, summaries=[{"order_type": "MARKET", "created": 0, "cancelled": 3}])),
]


@pytest.mark.parametrize(("rule", "wire"), REJECTED, ids=[rule for rule, _ in REJECTED])
def test_a_payload_breaking_one_rule_is_an_invalid_event(rule: str, wire: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent):
        events.decode(codec.pack(wire))
    with pytest.raises(InvalidEvent):
        events.from_wire(wire)


@pytest.mark.parametrize(("case", "wire"), ACCEPTED, ids=[case for case, _ in ACCEPTED])
def test_a_payload_at_the_edge_of_the_rules_is_accepted(case: str, wire: dict[str, Any]) -> None:
    decoded = events.decode(codec.pack(wire))
    assert decoded == events.from_wire(wire)
    assert all(decoded.to_wire()[name] == value for name, value in wire.items() if name != "note")


def test_an_integer_quantity_stays_an_integer() -> None:
    decoded = events.decode(codec.pack(changed(ORDER, quantity=5)))
    assert isinstance(decoded, events.OrderEvent)
    assert type(decoded.quantity) is int
    assert codec.pack(decoded.to_wire()) == codec.pack(changed(ORDER, quantity=5))


@pytest.mark.parametrize(
    "payload",
    [b"\xc1", b"\x93\x01\x02\x03", codec.pack(ORDER)[:-3], b"\x91" * 5000, b"\x81\xa4kind\xd4\x01\x00", b"\x00" * (codec.MAX_FRAME_BYTES + 1)],
    ids=["not msgpack", "not a map", "truncated", "nested too deep", "extension type", "frame too large"],
)
def test_garbage_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        events.decode(payload)


# An unknown field whose value the schema skips unread but a whole-map decode refuses.
BAD_UNKNOWN_FIELDS = pytest.mark.parametrize(
    "extra",
    [b"\xa2\xff\xfe", b"\xd4\x01\x00", b"\x91" * 5000 + b"\xc0"],
    ids=["invalid UTF-8", "extension type", "nested too deep"],
)


def with_unknown_field(extra: bytes) -> bytes:
    """ORDER packed with a field `note` whose value is the raw msgpack `extra`."""
    return codec.pack({**ORDER, "note": "placeholder"}).replace(codec.pack("placeholder"), extra)


@BAD_UNKNOWN_FIELDS
def test_a_bad_unknown_field_passes_the_schema_but_not_the_map_decode(extra: bytes) -> None:
    """Why the broker decodes the whole map too: the schema skips unknown fields unread."""
    payload = with_unknown_field(extra)
    if extra.startswith(b"\x91"):
        with pytest.raises(DecodeError):
            events.decode(payload)
    else:
        assert events.decode(payload) == events.from_wire(ORDER)
    with pytest.raises(DecodeError):
        codec.unpack_map(payload)


@given(every_message)
def test_encoding_a_message_gives_the_bytes_of_its_wire_map(message: events.WireMessage) -> None:
    assert codec.pack(message) == codec.pack(message.to_wire())
    assert codec.unpack_map(codec.pack(message))["kind"] == message.kind


def without_transport(message: events.Message) -> dict[str, Any]:
    return {name: value for name, value in message.to_wire().items() if name != "published_ns"}


@pytest.mark.parametrize(("rule", "wire"), REJECTED, ids=[rule for rule, _ in REJECTED])
def test_the_one_pass_check_refuses_every_payload_breaking_a_rule(rule: str, wire: dict[str, Any]) -> None:
    """decode_exact is the broker's fast path: it must never let in what decode() refuses."""
    assert exact_decode.decode_exact(codec.pack(wire)) is None
    assert exact_decode.decode_exact(codec.pack({**wire, "published_ns": 5})) is None


@pytest.mark.parametrize(("case", "wire"), ACCEPTED, ids=[case for case, _ in ACCEPTED])
def test_the_one_pass_check_gives_the_message_decode_gives_or_leaves_it_to_decode(case: str, wire: dict[str, Any]) -> None:
    exact = exact_decode.decode_exact(codec.pack({**wire, "published_ns": 7}))
    if "note" in wire:
        assert exact is None  # an unknown field: decode() and the whole-map decode decide
        return
    assert exact is not None
    message, published_ns = exact
    assert published_ns == 7
    assert isinstance(message, type(events.decode(codec.pack(wire))))
    assert without_transport(message) == events.decode(codec.pack(wire)).to_wire()


@pytest.mark.parametrize(
    ("case", "wire", "expected"),
    [
        ("published_ns absent", ORDER, (True, None)),
        ("published_ns an int", changed(ORDER, published_ns=123), (True, 123)),
        ("published_ns negative (the broker stamps its own)", changed(ORDER, published_ns=-1), (True, -1)),
        ("published_ns a float", changed(ORDER, published_ns=1.5), (False, None)),
        ("published_ns a string", changed(ORDER, published_ns="1"), (False, None)),
        ("an unknown field", changed(ORDER, note="fine"), (False, None)),
        ("an unknown field in the account", changed(ORDER, account={**ORDER["account"], "note": 1}), (False, None)),
        ("an unknown field in a batch summary", changed(BATCH, summaries=[{**BATCH["summaries"][0], "note": 1}]), (False, None)),
        ("a control message", CONTROL, (True, None)),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_what_the_one_pass_check_takes_itself(case: str, wire: dict[str, Any], expected: tuple[bool, int | None]) -> None:
    exact = exact_decode.decode_exact(codec.pack(wire))
    assert (exact is not None, exact[1] if exact else None) == expected


@BAD_UNKNOWN_FIELDS
def test_a_bad_unknown_field_is_left_to_the_two_passes(extra: bytes) -> None:
    payload = with_unknown_field(extra)
    assert exact_decode.decode_exact(payload) is None
