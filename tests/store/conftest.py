"""Fixtures of the store tests: a real ZeroMQ PULL socket standing in for the broker's ingress."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from bus import codec
from bus.events import ControlMessage, from_wire
from bus.publisher import Publisher
from bus.topics import CONTROL_TOPIC

RECEIVE_DEADLINE_MS = 5000


class ControlInbox:
    """A PULL socket bound to an ephemeral port; decodes what arrives as control messages."""

    def __init__(self, context: zmq.Context[Any]) -> None:
        self.socket = context.socket(zmq.PULL)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind("tcp://127.0.0.1:*")
        self.endpoint: str = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def receive(self, deadline_ms: int = RECEIVE_DEADLINE_MS) -> ControlMessage:
        """The next control message; fails the test if none arrives before the deadline."""
        if not self.socket.poll(deadline_ms):
            pytest.fail(f"no control message on {self.endpoint} within {deadline_ms} ms")
        topic, payload = self.socket.recv_multipart()
        assert topic == CONTROL_TOPIC
        message = from_wire(codec.unpack_map(payload))
        assert isinstance(message, ControlMessage)
        return message


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context[Any]]:
    """A context of the test's own, destroyed at the end."""
    context: zmq.Context[Any] = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def control_inbox(zmq_context: zmq.Context[Any]) -> ControlInbox:
    """Where control messages published to `inbox.endpoint` arrive."""
    return ControlInbox(zmq_context)


@pytest.fixture
def publisher(control_inbox: ControlInbox, zmq_context: zmq.Context[Any]) -> Iterator[Publisher]:
    """A real bus publisher connected to the control inbox."""
    publisher = Publisher(control_inbox.endpoint, context=zmq_context, linger_ms=0)
    yield publisher
    publisher.close()
