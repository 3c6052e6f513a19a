"""The Publisher queues while its peer is away and never hangs its caller."""

from __future__ import annotations

import time
from typing import Any

import pytest
import zmq

from bus import codec
from bus.errors import BusUnavailable
from bus.publisher import Publisher
from tests.bus.conftest import make_order
from tests.ports import refused_port


def unused_endpoint(ctx: zmq.Context[Any]) -> str:
    """An endpoint nobody listens on (tests/ports.py: reserved, outside the ephemeral range)."""
    return f"tcp://127.0.0.1:{refused_port()}"


@pytest.mark.parametrize("timeout_ms", [0, 200])
def test_a_send_that_cannot_be_queued_raises_bus_unavailable_instead_of_hanging(zctx: zmq.Context[Any], timeout_ms: int) -> None:
    endpoint = unused_endpoint(zctx)
    pub = Publisher(endpoint, context=zctx, hwm=5, send_timeout_ms=timeout_ms, linger_ms=0)
    sent_before_full = 0
    with pytest.raises(BusUnavailable):
        for _ in range(100):
            pub.publish(make_order(1, 1))
            sent_before_full += 1
    # The queue holds what it can while the peer is away; the send after that is refused.
    assert 1 <= sent_before_full < 100
    pub.close()


def test_messages_queued_while_the_peer_is_away_arrive_when_it_binds(zctx: zmq.Context[Any]) -> None:
    endpoint = unused_endpoint(zctx)
    with Publisher(endpoint, context=zctx) as pub:
        for i in range(20):
            pub.publish(make_order(2, 3, order_id=str(i)))
        pull = zctx.socket(zmq.PULL)
        pull.setsockopt(zmq.RCVTIMEO, 5000)
        pull.bind(endpoint)
        received = [pull.recv_multipart() for _ in range(20)]
    assert {topic for topic, _ in received} == {b"k/2/3/"}
    payloads = [codec.unpack_map(payload) for _, payload in received]
    assert [p["order_id"] for p in payloads] == [str(i) for i in range(20)]
    assert all(type(p["published_ns"]) is int and p["published_ns"] <= time.time_ns() for p in payloads)
    pull.close()
