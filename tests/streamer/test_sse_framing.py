"""SSE framing: events to exact bytes (a table), and properties no value can break."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import decimals
from bus.events import DECIMAL_FIELDS
from streamer import sse


@pytest.mark.parametrize(
    ("event", "data", "event_id", "expected"),
    [
        ("heartbeat", '{"a":1}', None, b'event: heartbeat\ndata: {"a":1}\n\n'),
        ("order_update", "{}", "7-3", b"id: 7-3\nevent: order_update\ndata: {}\n\n"),
        (None, "plain", None, b"data: plain\n\n"),
        ("x", "one\ntwo", None, b"event: x\ndata: one\ndata: two\n\n"),
        ("x", "one\r\ntwo\rthree", None, b"event: x\ndata: one\ndata: two\ndata: three\n\n"),
        ("x", "trailing\n", None, b"event: x\ndata: trailing\ndata: \n\n"),
        ("x", "", None, b"event: x\ndata: \n\n"),
        ("ev\r\nil", "d", "1-\n2\r", b"id: 1-2\nevent: evil\ndata: d\n\n"),
        ("x", "caf\u00e9 \u20ac", None, "event: x\ndata: caf\u00e9 \u20ac\n\n".encode()),
    ],
)
def test_frames_are_exactly_these_bytes(event: str | None, data: str, event_id: str | None, expected: bytes) -> None:
    assert sse.encode_frame(event, data, event_id) == expected


def test_retry_frame_asks_for_three_seconds() -> None:
    assert sse.RETRY_FRAME == b"retry: 3000\n\n"


def test_bus_event_frame_drops_kind_and_published_ns_and_keeps_one_line() -> None:
    payload = {"kind": "order_update", "published_ns": 123, "order_id": "a\nb", "n": 1.5, "none": None}
    frame = sse.bus_event_frame(42, 7, "order_update", payload)
    assert frame == b'id: 42-7\nevent: order_update\ndata: {"order_id":"a\\nb","n":1.5,"none":null}\n\n'


def test_json_frame_is_one_data_line() -> None:
    frame = sse.json_frame("resync", {"reason": "history_gone"})
    assert frame == b'event: resync\ndata: {"reason":"history_gone"}\n\n'


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (sse.connection_frame(10, 1, "7-3", True),
         b'event: connection\ndata: {"status":"connected","user_id":10,"strategy_id":1,"last_event_id":"7-3","bus":"up"}\n\n'),
        (sse.connection_frame(10, 1, "7-3", False),
         b'event: connection\ndata: {"status":"connected","user_id":10,"strategy_id":1,"last_event_id":"7-3","bus":"down"}\n\n'),
        (sse.bus_status_frame(False), b'event: bus_status\ndata: {"status":"down"}\n\n'),
        (sse.bus_status_frame(True), b'event: bus_status\ndata: {"status":"up"}\n\n'),
        (sse.heartbeat_frame("2025-01-06T10:00:00.000000Z", "7-0"), b'event: heartbeat\ndata: {"timestamp":"2025-01-06T10:00:00.000000Z","last_event_id":"7-0"}\n\n'),
        (sse.resync_frame("epoch_changed"), b'event: resync\ndata: {"reason":"epoch_changed"}\n\n'),
        (sse.force_disconnect_frame("strategy_inactive", 'Strategy "A\nB" was deactivated.'),
         b'event: force_disconnect\ndata: {"reason":"strategy_inactive","message":"Strategy \\"A\\nB\\" was deactivated."}\n\n'),
    ],
)
def test_system_events_are_exactly_these_bytes(frame: bytes, expected: bytes) -> None:
    assert frame == expected


def _parse(frame: bytes) -> tuple[dict[str, str], list[str]]:
    """The fields of one frame, as a browser would read them."""
    assert frame.endswith(b"\n\n") and b"\n\n" not in frame[:-2]
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in frame[:-2].decode().split("\n"):
        name, _, value = line.partition(": ")
        if name == "data":
            data.append(value)
        else:
            assert name not in fields
            fields[name] = value
    return fields, data


@settings(max_examples=200, deadline=None)
@given(event=st.text(), data=st.text(), event_id=st.text())
def test_no_value_can_end_a_frame_early_or_forge_a_field(event: str, data: str, event_id: str) -> None:
    fields, lines = _parse(sse.encode_frame(event, data, event_id))
    assert fields == {"id": sse.clean_field(event_id), "event": sse.clean_field(event)}
    normalized = data.replace("\r\n", "\n").replace("\r", "\n")
    assert "\n".join(lines) == normalized


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(), st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=8)))
def test_any_payload_becomes_a_single_data_line(payload: dict[str, object]) -> None:
    fields, lines = _parse(sse.bus_event_frame(1, 2, "order_update", payload))
    assert fields == {"id": "1-2", "event": "order_update"}
    assert len(lines) == 1


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3), max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(event=st.text(), value=st.dictionaries(st.text(), _JSON_VALUES))
def test_json_frame_is_encode_frame_of_its_json(event: str, value: dict[str, object]) -> None:
    assert sse.json_frame(event, value) == sse.encode_frame(event, orjson.dumps(value).decode("utf-8"))


def _reference_event_payload(payload: dict[str, object]) -> dict[str, object]:
    """event_payload as first written: every field looked at in order."""
    seen: dict[str, object] = {}
    for key, value in payload.items():
        if key in sse.INTERNAL_FIELDS:
            continue
        if key in DECIMAL_FIELDS and (type(value) is int or type(value) is float):
            value = decimals.normalize(value)
        elif key == "account" and type(value) is dict and type(value.get("equity")) in (int, float):
            value = {**value, "equity": decimals.normalize(value["equity"])}
        seen[key] = value
    return seen


_FIELD_NAMES = st.sampled_from(sorted(DECIMAL_FIELDS | sse.INTERNAL_FIELDS | {"account", "order_id", "side", "equity"})) | st.text(max_size=4)
_FIELD_VALUES = (
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(-1e20, 1e20, allow_nan=False) | st.text(max_size=6)
    | st.dictionaries(st.sampled_from(["equity", "name", "account_id"]), st.integers(-5, 5) | st.floats(-1e6, 1e6) | st.text(max_size=3))
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_FIELD_NAMES, _FIELD_VALUES))
def test_event_payload_is_the_field_by_field_reference_in_the_same_order(payload: dict[str, object]) -> None:
    ours, reference = sse.event_payload(payload), _reference_event_payload(payload)
    assert ours == reference
    assert list(ours) == list(reference)  # the JSON's order of keys too
