"""The broker fuzzed as a real process: generated hostile ingress frames, replay requests and relay envelopes.

Every example is sent to a running `tradestream-broker` (tests/bus/conftest.py);
after it, the broker must still sequence a valid event and answer a replay,
and at the end its log has no traceback and no line per bad message (they are
counted, and logged at most once a second or per 10 s). Cost: ~3 s for the three tests (one worker).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import msgspec
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import codec, protocol
from bus.topics import CONTROL_TOPIC, StreamKey, key_topic
from tests.bus.ack_client import AckClient
from tests.bus.conftest import BrokerProcess, broker_stats, make_order, request
from tests.bus.strategies import wire_values
from tests.hostile import HOSTILE_SETTINGS, TRAP_NUMBERS

# Each example's liveness probe is an event of its own key: the broker's head of it says it was sequenced.
PROBE_KEYS = (StreamKey(7, n) for n in itertools.count(1))
ANSWER_MS = 5000
AMOUNT_FIELDS = ["quantity", "price", "stop_price", "filled_quantity", "average_price"]

# Numbers msgpack can carry that are traps for a decimal field: non-finite, beyond 10^24, 64-bit edges.
trap_wire_numbers = st.one_of(
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e24, -1e24, 1e308, 5e-324, -0.0, 2**64 - 1, -(2**63), 10**24]),
    st.floats(), st.integers(-(2**63), 2**64 - 1),
)
# msgpack a decoder could be tricked by: length headers far beyond the bytes sent, deep nesting, extensions, bad UTF-8.
evil_msgpack = st.sampled_from([
    b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",  # array/map/str/bin of 2^32-1
    b"\x91" * 100_000, b"\x81\xa1a" * 30_000, b"\xd4\x01\x00", b"\xc7\x01\x05\x00", b"\xa2\xff\xfe", b"\xc1", b"",
    b"\x82\xa4kind\xaborder_update\xa4kind\xaborder_update", b"\x81\x01\x02", b"\x81\xc0\xc0",
])


def order_map(user_id: int = 1, strategy_id: int = 1) -> dict[str, Any]:
    return make_order(user_id, strategy_id).to_wire()


def mutated_event(changes: list[tuple[str, Any]]) -> bytes:
    wire = order_map()
    for name, value in changes:
        if value is _DROP:
            wire.pop(name, None)
        else:
            wire[name] = value
    try:
        return codec.pack(wire)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):  # a value msgpack cannot carry: send garbage instead
        return b"\xc1"


_DROP = object()
field_changes = st.lists(
    st.tuples(
        st.sampled_from([*AMOUNT_FIELDS, "user_id", "strategy_id", "kind", "published_ns", "account", "timestamp", "note", "order_id"]),
        st.one_of(trap_wire_numbers, st.sampled_from(TRAP_NUMBERS), wire_values, st.just(_DROP), st.text(min_size=250, max_size=300)),
    ),
    max_size=3,
)
topics = st.one_of(
    st.just(key_topic(StreamKey(1, 1))), st.just(CONTROL_TOPIC), st.just(key_topic(StreamKey(1, 10))),
    st.sampled_from([b"", b"k/", b"k/1/1", b"k/01/1/", b"k/1/1//", b"k/-1/1/", b"k/99999999999999999999/1/", b"\x00", b"k/\xd9\xa1/1/"]),
    st.binary(max_size=20),
)
payloads = st.one_of(field_changes.map(mutated_event), evil_msgpack, st.binary(max_size=64), wire_values.map(codec.pack),
                     st.just(b"\x80" * 70_000))
ingress_messages = st.one_of(
    st.tuples(topics, payloads).map(list),
    st.lists(st.binary(max_size=30), min_size=1, max_size=4),  # any number of frames
)


def sequenced(zctx: zmq.Context[Any], broker: BrokerProcess, key: StreamKey, push: zmq.Socket[Any]) -> None:
    """Push a valid event of `key` and wait until the broker's head of it is 1: it still reads and sequences."""
    push.send_multipart([key_topic(key), codec.pack(order_map(key.user_id, key.strategy_id))])
    deadline = time.monotonic() + ANSWER_MS / 1000
    while True:
        status, head = request(zctx, broker.endpoints["replay"], *protocol.replay_request(key_topic(key), 0, -1))
        if protocol.unpack_int_pair(head)[1] == 1:
            return
        assert time.monotonic() < deadline, f"the probe event of {key} was not sequenced ({status!r})"


def quiet_log(broker: BrokerProcess, seconds: float) -> None:
    """No traceback; the malformed frames are counted, not logged each (at most one line a second, one per 10 s)."""
    text = broker.log_text()
    assert "Traceback" not in text and " ERROR " not in text, text[-3000:]
    noisy = [line for line in text.splitlines() if "dropped" in line or "refused" in line or "malformed" in line]
    assert len(noisy) <= seconds + 3, noisy[:20]


@settings(HOSTILE_SETTINGS, max_examples=100)
@given(messages=st.lists(ingress_messages, min_size=1, max_size=5))
def _ingress_examples(messages: list[list[bytes]], run: Any) -> None:
    run(messages)


def test_hostile_ingress_frames_are_dropped_or_sequenced_and_the_broker_keeps_serving(
    broker: BrokerProcess, zctx: zmq.Context[Any]
) -> None:
    push = zctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(broker.endpoints["ingress"])
    started = time.monotonic()

    def run(messages: list[list[bytes]]) -> None:
        for frames in messages:
            push.send_multipart(frames)
        sequenced(zctx, broker, next(PROBE_KEYS), push)

    try:
        _ingress_examples(run=run)
    finally:
        push.close()
    stats = broker_stats(zctx, broker.endpoints["replay"])
    assert stats["dropped_malformed"] > 0 and stats["published"] > 100
    quiet_log(broker, time.monotonic() - started)


replay_numbers = st.one_of(st.integers(-(2**63), 2**64 - 1), st.sampled_from([-1, 0, 1, 2**63 - 1, 2**63, -(2**63)]), wire_values)
replay_requests = st.one_of(
    st.builds(lambda topic, epoch, after: [protocol.REPLAY, topic, codec.pack([epoch, after])], topics, replay_numbers, replay_numbers),
    st.builds(lambda topic, body: [protocol.REPLAY, topic, body], topics, st.one_of(evil_msgpack, st.binary(max_size=20), wire_values.map(codec.pack))),
    st.lists(st.binary(max_size=20), min_size=1, max_size=5),
    st.builds(lambda frames: [protocol.REPLAY, *frames], st.lists(st.binary(max_size=12), max_size=4)),
    st.just([protocol.STATS, b"extra"]),
)
REPLAY_ANSWERS = {protocol.OK, protocol.GONE, protocol.ERROR, protocol.STATS}


@settings(HOSTILE_SETTINGS, max_examples=150)
@given(frames=replay_requests)
def _replay_examples(frames: list[bytes], run: Any) -> None:
    run(frames)


def test_every_hostile_replay_request_is_answered_and_a_good_one_after_it(broker: BrokerProcess, zctx: zmq.Context[Any]) -> None:
    started = time.monotonic()
    dealer = zctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.RCVTIMEO, ANSWER_MS)
    dealer.connect(broker.endpoints["replay"])

    def run(frames: list[bytes]) -> None:
        # One request at a time on one peer, as the streamer asks: each is answered (ok, gone or error).
        dealer.send_multipart(frames)
        assert dealer.recv_multipart()[0] in REPLAY_ANSWERS, frames
        dealer.send_multipart(protocol.replay_request(key_topic(StreamKey(1, 1)), 0, -1))
        assert dealer.recv_multipart()[0] == protocol.OK  # after_seq -1: the key's head

    try:
        _replay_examples(run=run)
    finally:
        dealer.close()
    quiet_log(broker, time.monotonic() - started)


envelopes = st.one_of(
    st.builds(codec.pack, wire_values),
    st.builds(lambda s, e, p: codec.pack([s, e, p]), st.one_of(st.text(max_size=70), wire_values), replay_numbers, replay_numbers),
    evil_msgpack,
)
relay_messages = st.one_of(
    st.builds(lambda env, topic, payload: [protocol.PUB, env, topic, payload], envelopes, topics, payloads),
    st.builds(lambda env: [protocol.HELLO, env], envelopes),
    st.builds(lambda stream, topic, payload: protocol.pub_message(stream, 1, 0, topic, payload),
              st.text(min_size=1, max_size=64), topics, payloads),
    st.lists(st.binary(max_size=20), min_size=1, max_size=5),
)


@settings(HOSTILE_SETTINGS, max_examples=100)
@given(messages=st.lists(relay_messages, min_size=1, max_size=4))
def _relay_examples(messages: list[list[bytes]], run: Any) -> None:
    run(messages)


def test_hostile_relay_messages_never_stop_the_acknowledged_ingress(broker: BrokerProcess, zctx: zmq.Context[Any]) -> None:
    started = time.monotonic()
    hostile, honest = AckClient(zctx, broker.endpoints["ack_ingress"]), AckClient(zctx, broker.endpoints["ack_ingress"])
    streams = (f"honest-{n}" for n in itertools.count())

    def run(messages: list[list[bytes]]) -> None:
        for frames in messages:
            hostile.send_raw(*frames)
        stream = next(streams)
        honest.send(stream, 1, 0, key_topic(StreamKey(1, 1)), codec.pack(order_map()))
        honest.acked(stream, 1)

    try:
        _relay_examples(run=run)
    finally:
        hostile.close()
        honest.close()
    quiet_log(broker, time.monotonic() - started)
