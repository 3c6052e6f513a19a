"""The broker as a real process: sequencing, replay, restarts, garbage."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import zmq

from bus import codec, protocol
from bus.publisher import Publisher
from bus.topics import CONTROL_TOPIC, StreamKey, key_topic
from tests.bus.conftest import BrokerProcess, broker_stats, make_order, request
from tests.waiting import wait_until

KEYS = [StreamKey(1, 1), StreamKey(1, 10), StreamKey(11, 1)]


def live_sub(ctx: zmq.Context[Any], broker: BrokerProcess, topics: list[bytes]) -> zmq.Socket[Any]:
    """A SUB whose subscriptions the broker has answered with head markers."""
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVTIMEO, 5000)
    sub.connect(broker.endpoints["publish"])
    for topic in topics:
        sub.subscribe(topic)
    answered: set[bytes] = set()
    while answered != set(topics):
        topic, _header, payload = sub.recv_multipart()
        if codec.unpack_map(payload)["kind"] == protocol.HEAD:
            answered.add(topic)
    return sub


def read_events(sub: zmq.Socket[Any], count: int) -> list[tuple[bytes, protocol.Header, dict[str, Any]]]:
    received = []
    while len(received) < count:
        topic, header, payload = sub.recv_multipart()
        if topic != CONTROL_TOPIC:
            received.append((topic, protocol.unpack_header(header), codec.unpack_map(payload)))
    return received


def test_seq_is_contiguous_per_key_under_interleaved_keys(broker: BrokerProcess, zctx: zmq.Context[Any]) -> None:
    sub = live_sub(zctx, broker, [key_topic(k) for k in KEYS])
    with Publisher(broker.endpoints["ingress"], context=zctx) as pub:
        for i in range(300):
            key = KEYS[i % 3]
            pub.publish(make_order(key.user_id, key.strategy_id, order_id=str(i)))
        received = read_events(sub, 300)
    for key in KEYS:
        mine = [(h, p) for t, h, p in received if t == key_topic(key)]
        assert [h.seq for h, _ in mine] == list(range(1, 101))
        assert [int(p["order_id"]) for _, p in mine] == sorted(int(p["order_id"]) for _, p in mine)
        assert all((p["user_id"], p["strategy_id"]) == key for _, p in mine)
        assert len({h.epoch for h, _ in mine}) == 1
    sub.close()


def test_subscription_is_answered_with_the_keys_head(broker: BrokerProcess, zctx: zmq.Context[Any]) -> None:
    with Publisher(broker.endpoints["ingress"], context=zctx) as pub:
        for i in range(7):
            pub.publish(make_order(5, 5, order_id=str(i)))
        wait_until(lambda: broker_stats(zctx, broker.endpoints["replay"])["published"] == 7, what="7 events sequenced")
    sub = zctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVTIMEO, 5000)
    sub.connect(broker.endpoints["publish"])
    sub.subscribe(key_topic(StreamKey(5, 5)))
    _topic, header, payload = sub.recv_multipart()
    assert codec.unpack_map(payload) == {"kind": protocol.HEAD}
    assert protocol.unpack_header(header).seq == 7
    sub.close()


def replay(ctx: zmq.Context[Any], broker: BrokerProcess, key: StreamKey, epoch: int, after: int) -> tuple[bytes, int, int, list[int]]:
    status, head_frame, *pairs = request(ctx, broker.endpoints["replay"], *protocol.replay_request(key_topic(key), epoch, after))
    got_epoch, head = protocol.unpack_int_pair(head_frame)
    seqs = [protocol.unpack_header(h).seq for h in pairs[0::2]]
    return status, got_epoch, head, seqs


def test_replay_answers_ok_with_later_events_and_gone_when_evicted_or_foreign(tmp_path: Any, zctx: zmq.Context[Any]) -> None:
    broker = BrokerProcess(tmp_path, "--history", "5").start()
    try:
        key = StreamKey(2, 3)
        with Publisher(broker.endpoints["ingress"], context=zctx) as pub:
            for i in range(8):
                pub.publish(make_order(*key, order_id=str(i)))
            wait_until(lambda: broker_stats(zctx, broker.endpoints["replay"])["published"] == 8, what="8 events")
        status, epoch, head, seqs = replay(zctx, broker, key, 0, protocol.HEAD_ONLY)
        assert (status, head, seqs) == (protocol.OK, 8, [])
        assert replay(zctx, broker, key, epoch, 5) == (protocol.OK, epoch, 8, [6, 7, 8])
        assert replay(zctx, broker, key, epoch, 3) == (protocol.OK, epoch, 8, [4, 5, 6, 7, 8])
        assert replay(zctx, broker, key, epoch, 8) == (protocol.OK, epoch, 8, [])
        assert replay(zctx, broker, key, epoch, 2) == (protocol.GONE, epoch, 8, [])
        assert replay(zctx, broker, key, epoch, 9) == (protocol.GONE, epoch, 8, [])
        assert replay(zctx, broker, key, epoch + 1, 7) == (protocol.GONE, epoch, 8, [])
        assert replay(zctx, broker, StreamKey(9, 9), epoch, 0) == (protocol.OK, epoch, 0, [])
        bad = request(zctx, broker.endpoints["replay"], *protocol.replay_request(b"k/1/", epoch, 0))
        assert bad[0] == protocol.ERROR
    finally:
        broker.kill()


def test_restart_changes_the_epoch(broker: BrokerProcess, zctx: zmq.Context[Any]) -> None:
    first = broker_stats(zctx, broker.endpoints["replay"])["epoch"]
    broker.kill()
    broker.start()
    assert broker_stats(zctx, broker.endpoints["replay"])["epoch"] != first


def test_events_pushed_while_the_broker_is_down_are_delivered_after_it_starts(broker: BrokerProcess, zctx: zmq.Context[Any]) -> None:
    key = StreamKey(4, 4)
    with Publisher(broker.endpoints["ingress"], context=zctx) as pub:
        pub.publish(make_order(*key, order_id="before"))
        wait_until(lambda: broker_stats(zctx, broker.endpoints["replay"])["published"] == 1, what="first event")
        broker.kill()
        for i in range(50):
            pub.publish(make_order(*key, order_id=str(i)))
        broker.start()
        wait_until(lambda: broker_stats(zctx, broker.endpoints["replay"])["published"] == 50, what="queued events")
    status, epoch, head, _seqs = replay(zctx, broker, key, 0, protocol.HEAD_ONLY)
    assert head == 50
    status, _head_frame, *pairs = request(zctx, broker.endpoints["replay"], *protocol.replay_request(key_topic(key), epoch, 0))
    assert status == protocol.OK
    assert [codec.unpack_map(p)["order_id"] for p in pairs[1::2]] == [str(i) for i in range(50)]


def test_sigterm_stops_the_broker_cleanly(broker: BrokerProcess) -> None:
    assert broker.terminate() == 0


GARBAGE: list[tuple[str, list[bytes]]] = [
    ("one frame", [b"k/1/1/"]),
    ("five frames", [b"k/1/1/", b"a", b"b", b"c", b"d"]),
    ("bad msgpack", [b"k/1/1/", b"\xc1\xc1\xc1"]),
    ("not a map", [b"k/1/1/", codec.pack([1, 2, 3])]),
    ("unknown kind", [b"k/1/1/", codec.pack({"kind": "order_exploded", "user_id": 1, "strategy_id": 1})]),
    ("broker-only kind", [b"k/1/1/", protocol.HEAD_PAYLOAD]),
    ("wrong type", [b"k/1/1/", codec.pack({**make_order(1, 1).to_wire(), "quantity": "lots"})]),
    ("topic/payload mismatch", [b"k/1/10/", codec.pack(make_order(1, 1).to_wire())]),
    ("bad topic", [b"k/01/1/", codec.pack(make_order(1, 1).to_wire())]),
    ("key event on control", [CONTROL_TOPIC, codec.pack(make_order(1, 1).to_wire())]),
    # A frame over ZMQ_MAXMSGSIZE disconnects its peer instead: tests/bus/test_bounds.py.
    ("non-string key at the top", [b"k/1/1/", codec.pack({**make_order(1, 1).to_wire(), 1: "x"})]),
    ("nested non-string key", [b"k/1/1/", codec.pack({**make_order(1, 1).to_wire(), "note": {1: {2: "x"}}})]),
    ("nested bytes key", [b"k/1/1/", codec.pack({**make_order(1, 1).to_wire(), "note": {b"k": 1}})]),
    # The schema skips unknown fields unread; a subscriber could not decode these.
    ("bad UTF-8 in an unknown field", [b"k/1/1/", codec.pack({**make_order(1, 1).to_wire(), "note": "~"}).replace(b"\xa1~", b"\xa2\xff\xfe")]),
    ("extension in an unknown field", [b"k/1/1/", codec.pack({**make_order(1, 1).to_wire(), "note": "~"}).replace(b"\xa1~", b"\xd4\x01\x00")]),
]


def test_garbage_frames_are_dropped_counted_and_the_broker_keeps_serving(broker: BrokerProcess, zctx: zmq.Context[Any]) -> None:
    push = zctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(broker.endpoints["ingress"])
    for _name, frames in GARBAGE:
        push.send_multipart(frames)
    push.send_multipart([key_topic(StreamKey(1, 1)), codec.pack(make_order(1, 1).to_wire())])
    stats = wait_until(
        lambda: (s := broker_stats(zctx, broker.endpoints["replay"]))["received"] == len(GARBAGE) + 1 and s,
        what="every frame read",
    )
    assert stats["dropped_malformed"] == len(GARBAGE)
    assert stats["published"] == 1
    assert broker.proc is not None and broker.proc.poll() is None
    assert "dropped malformed frame" in broker.log_text()
    push.close()


@pytest.mark.parametrize("frames", [[b"nonsense"], [protocol.REPLAY, b"k/1/1/"], [protocol.REPLAY, b"k/1/1/", b"\xc1"]])
def test_bad_replay_requests_get_an_error_answer(broker: BrokerProcess, zctx: zmq.Context[Any], frames: list[bytes]) -> None:
    assert request(zctx, broker.endpoints["replay"], *frames)[0] == protocol.ERROR
    assert broker_stats(zctx, broker.endpoints["replay"])["bad_requests"] == 1


def test_a_taken_port_is_one_line_on_stderr_and_exit_1(broker: BrokerProcess) -> None:
    taken = broker.endpoints["ingress"]
    result = subprocess.run(
        [sys.executable, "-m", "bus.broker", "--ingress", taken, "--publish", "tcp://127.0.0.1:*", "--replay", "tcp://127.0.0.1:*", "--ack-ingress", "tcp://127.0.0.1:*"],
        capture_output=True, text=True, timeout=10,
    )
    assert result.returncode == 1
    assert "cannot bind" in result.stderr and "Traceback" not in result.stderr


def test_more_requests_than_one_drain_takes_are_all_answered(broker: BrokerProcess, zctx: zmq.Context[Any]) -> None:
    """The replay ROUTER is polled by its FD: what one drain (1,024) leaves is found again (ZMQ_EVENTS)."""
    dealers: list[zmq.Socket[Any]] = []
    try:
        for _ in range(300):
            dealer = zctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(broker.endpoints["replay"])
            dealers.append(dealer)
        for dealer in dealers:
            for _ in range(4):  # REPLAY_QUEUE answers per peer wait unread at most
                dealer.send_multipart([protocol.STATS])
        answered = [0] * len(dealers)

        def all_answered() -> bool:
            for index, dealer in enumerate(dealers):
                while dealer.poll(0):
                    assert dealer.recv_multipart()[0] == protocol.STATS
                    answered[index] += 1
            return sum(answered) == 4 * len(dealers)

        wait_until(all_answered, timeout=30, what="1,200 stats answers")
    finally:
        for dealer in dealers:
            dealer.close()
    assert broker_stats(zctx, broker.endpoints["replay"])["replay_answers_dropped"] == 0
