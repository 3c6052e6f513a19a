"""What a Subscriber (bus/subscriber.py) tells its owner: the `SubscriberSink` protocol.

The streamer's Hub (streamer/hub.py) is the one sink of a process. Each call
comes on the event loop, never two at once; a call that raises is logged by the
Subscriber and does not stop the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bus import events
from bus.replay import BusEvent, Position
from bus.topics import StreamKey


class SubscriberSink(Protocol):
    """What a Subscriber tells its owner. Called on the event loop, never concurrently."""

    def on_events(self, key: StreamKey, events: Sequence[BusEvent]) -> None:
        """Events of `key`, contiguous and in order, continuing from the last call."""

    def on_resync(self, key: StreamKey, reason: str, position: Position) -> None:
        """History of `key` is lost (`epoch_changed` or `history_gone`); it goes on after `position`."""

    def on_control(self, message: events.ControlMessage) -> None:
        """A control message (disconnect, cleanup_strategy) from the bus."""

    def on_broker_status(self, up: bool) -> None:
        """The broker stopped or started answering heartbeats."""
