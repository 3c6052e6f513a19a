"""The subscriber's watchdog: tells a silent broker from a stall of our own, and never loses a queue to either.

The broker heartbeats on the control topic. Every quarter of `heartbeat_timeout`
the watchdog drains the SUB socket and asks bus/liveness.py how long the broker
has been silent while this process was awake to hear it:

- after `heartbeat_timeout` of that silence the broker is reported down, and the
  socket is kept: a broker that was only frozen (SIGSTOP, a long pause) resumes
  on the same connection, and what it publishes then arrives, nothing lost;
- after `reconnect_after` the SUB socket is recreated and every subscription sent
  again, for a half-open TCP connection that can hide a vanished peer for minutes
  (a broker that exits or restarts closes the connection, and libzmq reconnects
  and resubscribes by itself); the markers that answer tell each key whether it
  missed events (replay) or the broker restarted (resync). Nothing is queued on
  a socket that said nothing for that long, so recreating it throws nothing away.

It used to recreate the socket after 3 s without a message, whoever was silent:
a streamer frozen for 3 s woke up, its watchdog timer fired before libzmq's I/O
thread had moved the waiting messages into the socket, and the events queued for
it were thrown away (4 of 9 runs ended in history_gone); a broker frozen for 5 s
lost the new subscription's race against the burst it published on waking (3 of
4). tests/bus/test_freezes.py freezes both with real SIGSTOP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from bus.liveness import Liveness, Verdict

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

    def stalled(self) -> None:
        """Count a stall of this process (a tick that came more than a tick late)."""


async def watch(subscriber: WatchedSubscriber, heartbeat_timeout: float, reconnect_after: float) -> None:
    """Until the subscriber closes: report a silent broker down, and reconnect after a long silence."""
    tick = heartbeat_timeout / 4
    liveness = Liveness(heartbeat_timeout, reconnect_after, tick, time.monotonic())
    while not subscriber.closed:
        await asyncio.sleep(tick)  # a timer tick, not a wait for a condition
        subscriber.read_now()  # cheap insurance against an edge of ZMQ_FD that nobody saw
        stalls = liveness.stalls
        verdict = liveness.tick(time.monotonic(), subscriber.last_heard)
        if liveness.stalls != stalls:
            subscriber.stalled()
        if verdict is Verdict.NONE:
            continue
        if subscriber.broker_up:
            log.warning("no broker heartbeat for %.1fs: broker down, still listening", heartbeat_timeout)
            subscriber.broker_lost()
        if verdict is Verdict.RECONNECT:
            log.warning("no broker heartbeat for %.1fs: recreating the SUB socket", reconnect_after)
            subscriber.recreate_sub()
