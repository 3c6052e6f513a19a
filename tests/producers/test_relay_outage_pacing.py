"""The outbox relay while the database is down: it tries again after a pause, never at every turn of its loop.

The producer's poll loop (producers/pull_loop.py) waits until the relay's deadline or
POLL_MAX_MS; a relay whose database work failed must not ask for it again at once. A
mark's deadline left in the past (the failed write's) made the loop poll without
waiting, and the order and position handlers each spun a core while PostgreSQL was
down (tests/faults/test_database_crash.py found it); a read of the outbox was tried
again at every turn (10 a second) instead of after a pause. The relay's clock is
frozen and moved by the test; the database is PostgreSQL reached through a TCP relay
the test cuts (tests/producers/test_database_outage.py's `relayed`).
"""

from __future__ import annotations

from typing import Any

import pytest
import zmq

from bus.protocol import ACK
from producers.errors import TRANSIENT
from producers.relay import DATABASE_RETRY_S
from producers.relay import Relay as OutboxRelay
from tests.producers.conftest import World
from tests.producers.test_database_outage import pump_refused
from tests.producers.test_database_outage import pytestmark as pytestmark  # PostgreSQL only, as there
from tests.producers.test_database_outage import relayed as relayed  # the fixture
from tests.producers.test_relay import CALM, StandInBroker, commit_events, sent_marks, summary
from tests.relay import Relay
from tests.waiting import wait_until


class FrozenClock:
    """A clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_mark_the_database_refused_is_written_again_after_a_pause_not_at_once(relayed: tuple[World, Relay]) -> None:
    world, relay = relayed
    ctx: zmq.Context[Any] = zmq.Context()
    broker, clock = StandInBroker(ctx), FrozenClock()
    outbox_relay = OutboxRelay(world.sessions, "orders", broker.endpoint, context=ctx, limits=CALM, clock=clock)
    try:
        rows = commit_events(world, summary(world.user_ids["alice"], 1))
        outbox_relay.offer(rows)
        broker.receive(outbox_relay, 1)
        relay.cut()
        broker.answer(ACK, outbox_relay.stream, rows[0].id)

        wait_until(lambda: pump_refused(outbox_relay), what="the relay's write of its mark to fail while the database is down")
        # The producer's poll loop waits until this deadline: one in the past (the failed write's, before)
        # made it poll without waiting and write again at once, a core busy while the database was down.
        deadline = outbox_relay.deadline()
        assert deadline is not None and deadline > clock()
        relay.restore()
        outbox_relay.pump()
        assert sent_marks(world) == [(rows[0].id, False, None)]  # not due yet
        clock.now = deadline
        outbox_relay.pump()
        assert sent_marks(world) == [(rows[0].id, True, None)]
    finally:
        outbox_relay.close()
        broker.socket.close()
        ctx.destroy(linger=0)


def test_a_read_of_the_outbox_the_database_refused_is_tried_again_after_a_pause_not_at_every_turn(
    relayed: tuple[World, Relay],
) -> None:
    world, relay = relayed
    ctx: zmq.Context[Any] = zmq.Context()
    broker, clock = StandInBroker(ctx), FrozenClock()
    outbox_relay = OutboxRelay(world.sessions, "orders", broker.endpoint, context=ctx, limits=CALM, clock=clock)
    try:
        broker.greet(outbox_relay)
        relay.cut()
        outbox_relay.recheck()  # what the producer's loop does after any failed step: the outbox is read again
        with pytest.raises(TRANSIENT):
            outbox_relay.pump()
        outbox_relay.pump()  # the loop's next turn, still down: no read (before: one at every turn, 10 a second)
        relay.restore()
        rows = commit_events(world, summary(world.user_ids["alice"], 1))  # committed, not offered: only a read finds it
        clock.now += DATABASE_RETRY_S
        assert [event_id for _, event_id, _, _ in broker.receive(outbox_relay, 1)] == [rows[0].id]
    finally:
        outbox_relay.close()
        broker.socket.close()
        ctx.destroy(linger=0)
