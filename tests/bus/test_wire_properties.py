"""Properties of the wire: topics never collide, every message round-trips, garbage fails cleanly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus import codec, events, exact_decode
from bus.errors import DecodeError
from bus.topics import CONTROL_TOPIC, StreamKey, key_topic, parse_key_topic
from tests.bus.strategies import every_message, keys, wire_values


@given(keys, keys)
def test_a_key_topic_is_never_a_prefix_of_another_keys_topic(a: StreamKey, b: StreamKey) -> None:
    if a != b:
        assert not key_topic(b).startswith(key_topic(a))
    assert not key_topic(a).startswith(CONTROL_TOPIC)


@given(keys)
def test_key_topic_parses_back_to_its_key(key: StreamKey) -> None:
    assert parse_key_topic(key_topic(key)) == key


@pytest.mark.parametrize(
    "topic",
    [b"k/1/1", b"k/01/1/", b"k/1/0/", b"k/-1/1/", b"k/1/1//", b"c/", b"k/9223372036854775808/1/", b"k/\xd9\xa1/1/", b""],
)
def test_parse_key_topic_rejects_anything_but_canonical_topics(topic: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_key_topic(topic)


@given(every_message)
def test_every_message_kind_round_trips_through_msgpack(message: events.WireMessage) -> None:
    decoded = events.from_wire(codec.unpack_map(codec.pack(message.to_wire())))
    assert decoded == message
    assert type(decoded) is type(message)


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        events.from_wire(codec.unpack_map(data))
    except DecodeError:
        pass


@given(wire_values)
def test_any_msgpack_value_is_a_valid_message_or_raises_decode_error(value: object) -> None:
    try:
        events.from_wire(codec.unpack_map(codec.pack(value)))
    except DecodeError:
        pass


@given(every_message, st.sampled_from(["user_id", "strategy_id", "kind", "reason", "timestamp", "account", "quantity", "summaries"]), wire_values)
def test_a_field_replaced_by_anything_else_is_caught(message: events.WireMessage, name: str, value: object) -> None:
    wire = message.to_wire()
    if name not in wire:
        return
    wire[name] = value
    try:
        decoded = events.from_wire(codec.unpack_map(codec.pack(wire)))
    except DecodeError:
        return
    assert decoded.to_wire() == {k: v for k, v in wire.items() if k in decoded.to_wire()}


@given(st.binary(max_size=300))
def test_random_bytes_decoded_by_the_schema_raise_only_decode_error(data: bytes) -> None:
    try:
        events.decode(data)
    except DecodeError:
        pass


@given(wire_values)
def test_any_msgpack_value_decoded_by_the_schema_is_a_valid_message_or_raises_decode_error(value: object) -> None:
    try:
        decoded = events.decode(codec.pack(value))
    except DecodeError:
        return
    assert decoded == events.from_wire(value)


def both_passes(payload: bytes) -> tuple[events.Message, object] | None:
    """What the broker's two passes make of a payload (the reference for its one-pass check)."""
    try:
        return events.decode(payload), codec.unpack_map(payload).get("published_ns")
    except DecodeError:
        return None


@given(every_message, st.one_of(st.none(), st.integers(min_value=0, max_value=2**64 - 1)))
def test_the_one_pass_check_takes_every_message_of_the_schema(message: events.WireMessage, published_ns: int | None) -> None:
    wire = message.to_wire() if published_ns is None else {**message.to_wire(), "published_ns": published_ns}
    exact = exact_decode.decode_exact(codec.pack(wire))
    assert exact is not None
    assert exact[1] == published_ns
    assert {k: v for k, v in exact[0].to_wire().items() if k != "published_ns"} == message.to_wire()


def assert_the_two_passes_take_what_the_one_pass_takes(payload: bytes) -> None:
    """Whatever `decode_exact` takes, decode() + the whole-map check take alike (published_ns apart)."""
    exact = exact_decode.decode_exact(payload)
    if exact is None:
        return
    reference = both_passes(payload)
    assert reference is not None
    assert reference[1] == exact[1]
    assert reference[0].to_wire() == {k: v for k, v in exact[0].to_wire().items() if k != "published_ns"}


@given(wire_values)
def test_what_the_one_pass_check_takes_the_two_passes_take_alike(value: object) -> None:
    assert_the_two_passes_take_what_the_one_pass_takes(codec.pack(value))


@given(every_message, st.sampled_from(["user_id", "strategy_id", "kind", "reason", "timestamp", "account", "quantity", "summaries", "published_ns", "note"]), wire_values)
def test_a_field_replaced_by_anything_is_taken_by_the_one_pass_check_only_if_the_two_passes_take_it(
    message: events.WireMessage, name: str, value: object,
) -> None:
    assert_the_two_passes_take_what_the_one_pass_takes(codec.pack({**message.to_wire(), name: value}))
