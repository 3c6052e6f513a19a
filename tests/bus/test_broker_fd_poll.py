"""The broker's XPUB polled by its ZMQ_FD (bus/fd_poll.py): no subscription waits for a heartbeat.

Its descriptor fires when a command reaches the socket's mailbox, and a send on the socket may
take that command (and read the subscription into libzmq's queue) without the broker reading
it: then the descriptor stays quiet. With a heartbeat an hour away, a subscription missed so
waits for the heartbeat's recheck: the subscriber's receive times out.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import zmq

from bus import codec, protocol
from bus.publisher import Publisher
from bus.topics import StreamKey, key_topic
from tests.bus.conftest import BrokerProcess, broker_stats, make_order
from tests.waiting import wait_until

HOUR = "3600"  # --bus-heartbeat: no recheck at a heartbeat can serve what the test waits for
RECEIVE_MS = 10_000  # a deadline for the answer, not a measure of it


def long_heartbeat_broker(tmp_path: Path) -> BrokerProcess:
    return BrokerProcess(tmp_path, "--bus-heartbeat", HOUR).start()


def subscriber(ctx: zmq.Context[Any], broker: BrokerProcess) -> zmq.Socket[Any]:
    sub: zmq.Socket[Any] = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVTIMEO, RECEIVE_MS)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(broker.endpoints["publish"])
    return sub


def next_key_message(sub: zmq.Socket[Any], topic: bytes) -> tuple[protocol.Header, dict[str, Any]]:
    """The next message on `topic` (the control topic's heartbeats aside); zmq.Again past the deadline."""
    while True:
        got, header, payload = sub.recv_multipart()
        if got == topic:
            return protocol.unpack_header(header), codec.unpack_map(payload)


def publish_until(stop: threading.Event, endpoint: str, ctx: zmq.Context[Any], key: StreamKey) -> None:
    """Publish one key's events as fast as they can be queued, until `stop`."""
    wire = make_order(key.user_id, key.strategy_id).to_wire()
    wire["published_ns"] = time.time_ns()
    payload, topic = codec.pack(wire), key_topic(key)
    with Publisher(endpoint, context=ctx, linger_ms=0) as pub:
        while not stop.is_set():
            pub.send(topic, payload)


def test_subscriptions_made_while_the_broker_publishes_are_answered_without_a_heartbeat(
    tmp_path: Path, zctx: zmq.Context[Any]
) -> None:
    """60 subscriptions, one after the other, while another key's events flow: each gets its head marker."""
    broker = long_heartbeat_broker(tmp_path)
    busy = StreamKey(1, 1)
    stop = threading.Event()
    publishing = threading.Thread(target=publish_until, args=(stop, broker.endpoints["ingress"], zctx, busy))
    publishing.start()
    sub = subscriber(zctx, broker)
    try:
        wait_until(lambda: broker_stats(zctx, broker.endpoints["replay"])["published"] > 1000, what="events flowing")
        for strategy in range(2, 62):
            topic = key_topic(StreamKey(2, strategy))
            sub.subscribe(topic)
            try:
                header, payload = next_key_message(sub, topic)
            except zmq.Again:
                raise AssertionError(f"subscription {strategy - 1} of 60 unanswered while events flowed") from None
            assert payload == {"kind": protocol.HEAD} and header.seq == 0
        assert broker_stats(zctx, broker.endpoints["replay"])["published"] > 1000
    finally:
        stop.set()
        publishing.join()
        sub.close()
        broker.kill()


def test_a_subscription_to_an_idle_broker_is_answered_and_served_without_a_heartbeat(
    tmp_path: Path, zctx: zmq.Context[Any]
) -> None:
    """Nothing published since: the subscription's head marker, then the key's next event, all live."""
    broker = long_heartbeat_broker(tmp_path)
    key = StreamKey(3, 3)
    topic = key_topic(key)
    sub = subscriber(zctx, broker)
    try:
        with Publisher(broker.endpoints["ingress"], context=zctx) as pub:
            for n in range(3):
                pub.publish(make_order(key.user_id, key.strategy_id, order_id=str(n)))
            wait_until(lambda: broker_stats(zctx, broker.endpoints["replay"])["published"] == 3, what="3 events sequenced")
            sub.subscribe(topic)
            header, payload = next_key_message(sub, topic)
            assert payload == {"kind": protocol.HEAD} and header.seq == 3
            pub.publish(make_order(key.user_id, key.strategy_id, order_id="after"))
            header, payload = next_key_message(sub, topic)
        assert header.seq == 4 and payload["order_id"] == "after"
    finally:
        sub.close()
        broker.kill()
