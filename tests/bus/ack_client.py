"""A minimal client of the broker's acknowledged ingress (a real DEALER), for tests.

Not the producers' relay (producers/relay.py keeps an outbox and retries); just
enough to send `pub` messages with chosen ids and read the broker's answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import zmq

from bus import protocol
from bus.protocol import Answer

DEADLINE_S = 10.0


class AckClient:
    """One DEALER connected to `--ack-ingress`."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: str) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.answers: list[Answer] = []

    def send(self, stream: str, event_id: int, prev_id: int, topic: bytes, payload: bytes) -> None:
        self.sock.send_multipart(protocol.pub_message(stream, event_id, prev_id, topic, payload))

    def send_raw(self, *frames: bytes) -> None:
        self.sock.send_multipart(frames)

    def wait_for(self, condition: Callable[[list[Answer]], bool], what: str, timeout: float = DEADLINE_S) -> list[Answer]:
        """Read answers until `condition(all answers so far)` holds; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not condition(self.answers):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; answers: {self.answers}")
            if self.sock.poll(int(remaining * 1000) + 1):
                self.answers.append(protocol.parse_answer(self.sock.recv_multipart()))
        return self.answers

    def acked(self, stream: str, last: int, timeout: float = DEADLINE_S) -> list[Answer]:
        """Wait for `ack` of `stream` at `last` or beyond."""
        return self.wait_for(
            lambda answers: any(a.verb == protocol.ACK and a.stream == stream and a.number >= last for a in answers),
            f"ack {stream} {last}", timeout,
        )

    def close(self) -> None:
        self.sock.close()
