"""The subscriber's watchdog: a broker that stopped heartbeating gets a new SUB socket.

The broker heartbeats on the control topic. When nothing arrives for
`heartbeat_timeout` seconds the SUB socket is recreated and every subscription
sent again (libzmq does resubscribe on reconnect, but a half-open TCP connection
can hide a dead peer for minutes); the markers that answer tell each key whether
it missed events (replay) or the broker restarted (resync).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

log = logging.getLogger(__name__)


class WatchedSubscriber(Protocol):
    """What the watchdog reads and calls on its Subscriber."""

    closed: bool
    broker_up: bool

    @property
    def last_heard(self) -> float:
        """time.monotonic() of the last message read."""

    def read_now(self) -> None:
        """Read whatever waits on the SUB socket."""

    def broker_lost(self) -> None:
        """Mark the broker down and tell the sink."""

    def recreate_sub(self) -> None:
        """A new SUB socket with every subscription."""


async def watch(subscriber: WatchedSubscriber, heartbeat_timeout: float) -> None:
    """Until the subscriber closes: recreate its socket while no heartbeat arrives."""
    while not subscriber.closed:
        await asyncio.sleep(heartbeat_timeout / 4)  # a timer tick, not a wait for a condition
        subscriber.read_now()  # cheap insurance against an edge of ZMQ_FD that nobody saw
        if time.monotonic() - subscriber.last_heard < heartbeat_timeout:
            continue
        if subscriber.broker_up:
            log.warning("no broker heartbeat for %.1fs: recreating the SUB socket", heartbeat_timeout)
            subscriber.broker_lost()
        subscriber.recreate_sub()
