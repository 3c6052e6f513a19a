"""The producer side of the bus: a PUSH socket that never hangs its caller.

PUSH queues (up to its high-water mark) while the peer is down or restarting
and delivers once it is back, which is why producers PUSH rather than PUB.
A send that cannot be queued within `send_timeout_ms` raises BusUnavailable;
`send_timeout_ms=0` never blocks, for callers running on an event loop.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import zmq

from bus import codec, events, peersock, security
from bus.errors import BusUnavailable
from bus.events import KeyEvent, WireMessage
from bus.topics import CONTROL_TOPIC, key_topic


def topic_of(message: WireMessage) -> bytes:
    """Key events go to their key's topic, everything else to the control topic."""
    if isinstance(message, KeyEvent):
        return key_topic(message.key)
    return CONTROL_TOPIC


class Publisher:
    """Sends `[topic, payload]` frames to one PUSH endpoint; thread-safe."""

    def __init__(
        self,
        endpoint: str,
        *,
        context: zmq.Context[Any] | None = None,
        hwm: int = 100_000,
        send_timeout_ms: int = 1000,
        linger_ms: int = 2000,
    ) -> None:
        self.endpoint = endpoint
        # On close, give queued messages linger_ms to reach a live peer.
        self._socket = peersock.make(context or zmq.Context.instance(), zmq.PUSH, sndhwm=hwm, linger=linger_ms)
        self._socket.setsockopt(zmq.SNDTIMEO, send_timeout_ms)
        self._flags = zmq.NOBLOCK if send_timeout_ms == 0 else 0
        security.connect(self._socket, endpoint)
        self._lock = threading.Lock()
        self.sent = 0

    def publish(self, message: WireMessage) -> None:
        """Send an event or control message, stamped with its publish time; InvalidEvent when it breaks its schema."""
        wire = message.to_wire()
        wire["published_ns"] = time.time_ns()
        payload = codec.pack(wire)
        events.decode(payload)  # the broker would drop it silently: fail here, in the code that built it
        self.send(topic_of(message), payload)

    def send_map(self, topic: bytes, payload: dict[str, Any]) -> None:
        """Send a map that is not a bus event (for example a command between producers)."""
        self.send(topic, codec.pack(payload))

    def send(self, topic: bytes, payload: bytes) -> None:
        """Send raw frames; BusUnavailable when they cannot be queued in time."""
        with self._lock:
            try:
                self._socket.send_multipart((topic, payload), flags=self._flags, copy=True)
            except zmq.Again:
                raise BusUnavailable(f"{self.endpoint}: send queue full, peer down?") from None
            self.sent += 1

    def close(self) -> None:
        """Close the socket, letting queued messages drain for up to `linger_ms`."""
        with self._lock:
            self._socket.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
