"""A relay whose answers the broker's ack ROUTER dropped at its high-water mark recovers: every row handled once.

The ack ROUTER drops what does not fit a relay's queue (ROUTER_MANDATORY, sent without
blocking: the answer, and the rest of the batch to that relay, are dropped and counted; a
relay that does not read must not block the broker). Here the queue is tiny
(`ack_sndhwm=1`) and the relay reads nothing while the broker answers a burst of 1,800 rows
(two thirds of them malformed, so each one has its own `reject`): of the ~1,200 answers the
broker sends, only what the relay's receive queue (libzmq's 1000) and the ROUTER's 1 hold
arrives, the rest is dropped. The relay's timeout must send the unanswered rows again, the
broker answers the re-sent rejections `reject` again, and every row ends marked once: the
malformed ones with their reason, the others sequenced exactly once.

The broker runs in this process (the constructor's `ack_sndhwm`) on a real inproc ROUTER,
the relay (producers/relay.py) on a real DEALER and a real SQLite outbox: over tcp or ipc
the kernel's socket buffers would hold a varying part of the burst, inproc's queue is exactly
the two high-water marks, so the drop is certain.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bus import codec, protocol
from bus.broker import Broker, BrokerConfig
from bus.topics import StreamKey, key_topic
from producers.relay import Relay
from producers.relay_window import Row, WindowLimits
from store.db import init_db, make_engine, make_session_factory
from store.handoff import OutboxEvent
from tests.bus.conftest import broker_stats, make_order, request
from tests.producers.conftest import greeted
from tests.waiting import wait_until

ANY = "tcp://127.0.0.1:*"
KEY = StreamKey(3, 4)
ROWS = 1800
LIMITS = WindowLimits(window=2 * ROWS, retry_s=0.2, max_retry_s=1.0)  # the whole burst in flight at once


def bad(row: int) -> bool:
    return row % 3 != 0


class BrokerThread:
    """A Broker of this process, run by a thread until `close()`."""

    def __init__(self, ctx: zmq.Context[Any], ack_sndhwm: int) -> None:
        config = BrokerConfig(ingress=ANY, publish=ANY, replay=ANY, ack_ingress=f"inproc://acks-{uuid.uuid4().hex}", history=ROWS)
        self.broker = Broker(config, ctx, ack_sndhwm=ack_sndhwm)
        self.endpoints, self.epoch = self.broker.endpoints, self.broker.sequencer.epoch
        self.thread = threading.Thread(target=self.broker.run, name="broker", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.broker.stop()
        self.thread.join(timeout=10)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    init_db(engine)
    yield make_session_factory(engine)
    engine.dispose()


def outbox_rows(sessions: sessionmaker[Session]) -> list[tuple[bool, str | None]]:
    with sessions() as session:
        query = select(OutboxEvent.sent_at, OutboxEvent.failed).order_by(OutboxEvent.id)
        return [(sent is not None, failed) for sent, failed in session.execute(query)]


@pytest.mark.expect_log("rejected by the broker")
def test_a_relay_recovers_the_answers_the_ack_router_dropped_at_its_high_water_mark(
    sessions: sessionmaker[Session], zctx: zmq.Context[Any]
) -> None:
    good_wire = make_order(*KEY).to_wire()
    with sessions() as session:
        for row in range(1, ROWS + 1):
            wire = {**good_wire, "order_id": f"row-{row}", **({"quantity": "lots"} if bad(row) else {})}
            session.add(OutboxEvent(source="orders", topic=key_topic(KEY), payload=codec.pack(wire)))
        session.commit()
    broker = BrokerThread(zctx, ack_sndhwm=1)
    try:
        relay = Relay(sessions, "orders", broker.endpoints["ack_ingress"], context=zctx, limits=LIMITS)
        greeted(relay)  # that pump sent the whole burst; then it reads nothing until the broker answered all of it
        assert relay.window.in_flight == ROWS
        stats = wait_until(lambda: (s := broker_stats(zctx, broker.endpoints["replay"]))["ack_received"] == ROWS + 1 and s,
                           what="the broker to answer the burst")
        assert stats["ack_answers"] > 1001  # more than the relay's queue (1000) and the ROUTER's (1) hold
        assert stats["ack_answers_dropped"] >= stats["ack_answers"] - 1001  # and the broker knows it dropped them
        wait_until(lambda: (relay.pump(), relay.idle)[1], timeout=30, what="every row confirmed")
        relay.close()
        rows = outbox_rows(sessions)
        assert all(sent for sent, _ in rows)
        assert [number for number, (_, failed) in enumerate(rows, 1) if failed is not None] == [n for n in range(1, ROWS + 1) if bad(n)]
        assert all("quantity" in failed for _, failed in rows if failed is not None)
        assert relay.window.stats.timeouts >= 1  # the dropped answers were recovered by the timeout's resend
        stats = broker_stats(zctx, broker.endpoints["replay"])
        assert stats["ack_rejected_again"] >= 1  # some rejects were dropped and answered again
        assert (stats["ack_sequenced"], stats["ack_rejected"]) == (ROWS // 3, ROWS - ROWS // 3)
        status, _, *frames = request(zctx, broker.endpoints["replay"], *protocol.replay_request(key_topic(KEY), broker.epoch, 0))
        assert status == protocol.OK
        assert [protocol.unpack_header(header).seq for header in frames[0::2]] == list(range(1, ROWS // 3 + 1))  # none twice
        orders = [codec.unpack_map(payload)["order_id"] for payload in frames[1::2]]
        assert orders == [f"row-{n}" for n in range(1, ROWS + 1) if not bad(n)]
    finally:
        broker.close()


GAP_ROWS = 1100  # all malformed: more rejects than the relay's queue (1000) and the ROUTER's (1) hold
NO_TIMEOUT = WindowLimits(window=2 * GAP_ROWS, retry_s=60.0, max_retry_s=60.0)  # the relay never resends on its own here


@pytest.mark.expect_log("rejected by the broker")
def test_a_reject_dropped_at_the_high_water_mark_is_not_passed_by_the_ack_of_a_later_batch(
    sessions: sessionmaker[Session], zctx: zmq.Context[Any]
) -> None:
    # The relay reads nothing while the broker rejects a burst: the rejects past its queue are dropped.
    # It then reads what arrived and commits one good row: the broker's ack of that row (a later batch)
    # covers the rows whose reject was dropped. Without the untold rejects sent before it, the relay
    # marked them sent with no reason (failed on main: rows 1002..1100 sent, `failed` None).
    bad_wire = {**make_order(*KEY).to_wire(), "quantity": "lots"}
    with sessions() as session:
        for row in range(1, GAP_ROWS + 1):
            session.add(OutboxEvent(source="orders", topic=key_topic(KEY), payload=codec.pack({**bad_wire, "order_id": f"row-{row}"})))
        session.commit()
    broker = BrokerThread(zctx, ack_sndhwm=1)
    try:
        relay = Relay(sessions, "orders", broker.endpoints["ack_ingress"], context=zctx, limits=NO_TIMEOUT)
        greeted(relay)
        assert relay.window.in_flight == GAP_ROWS
        stats = wait_until(lambda: (s := broker_stats(zctx, broker.endpoints["replay"]))["ack_received"] == GAP_ROWS + 1 and s,
                           what="the broker to answer the burst")
        assert stats["ack_answers_dropped"] >= 1  # some rejects never reached the relay
        wait_until(lambda: (relay.pump(), relay.window.acked > 0 and relay.socket.poll(0) == 0)[1], what="the queued answers read")
        assert 0 < relay.window.acked < GAP_ROWS and relay.window.stats.timeouts == 0
        good = OutboxEvent(source="orders", topic=key_topic(KEY), payload=codec.pack({**make_order(*KEY).to_wire(), "order_id": "good"}))
        with sessions() as session:
            session.add(good)
            session.commit()
            relay.offer([Row(good.id, good.topic, good.payload)])
        wait_until(lambda: (relay.pump(), relay.idle)[1], what="the good row confirmed")
        relay.close()
        rows = outbox_rows(sessions)
        assert len(rows) == GAP_ROWS + 1 and all(sent for sent, _ in rows)
        assert [n for n, (_, failed) in enumerate(rows[:-1], 1) if failed is None] == []  # every rejected row has its reason
        assert all("quantity" in failed for _, failed in rows[:-1] if failed is not None) and rows[-1] == (True, None)
        assert relay.window.stats.timeouts == 0  # told by the broker, not recovered by a resend
        stats = broker_stats(zctx, broker.endpoints["replay"])
        assert (stats["ack_sequenced"], stats["ack_rejected"], stats["ack_rejects_untold"]) == (1, GAP_ROWS, 0)
    finally:
        broker.close()
