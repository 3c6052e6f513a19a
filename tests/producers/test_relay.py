"""The outbox relay against a real ROUTER socket standing in as the broker (and a real broker killed), on the demo database."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import zmq
from sqlalchemy import select, update

from bus import codec, protocol
from bus.events import BatchSummary as Summary
from bus.events import OrderBatchEvent, from_wire
from bus.protocol import ACK, PUB, REJECT, RESEND, UNKNOWN
from bus.topics import StreamKey
from producers import outbox
from producers.outbox import Written
from producers.relay import Relay
from producers.relay_window import Row, WindowLimits
from store.columns import utc_now
from store.handoff import OutboxEvent
from tests.bus.conftest import BrokerProcess, history
from tests.ports import reserved_ports
from tests.producers.conftest import World
from tests.waiting import wait_until

FAST = WindowLimits(window=4, retry_s=0.05, max_retry_s=0.2)
# No timeout fires within a test: the stand-in's answers alone drive the relay, however slow the machine
# (with FAST's 50 ms, a loaded machine's late answer let a timeout rewind first, and resends came twice).
CALM = WindowLimits(window=4, retry_s=60.0, max_retry_s=60.0)
HEAD = codec.Schema[tuple[str, int, int]](tuple[str, int, int])


class StandInBroker:
    """A bound ROUTER: it receives what the relay sends and answers what the test says."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: str = "tcp://127.0.0.1:*") -> None:
        self.socket = ctx.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(endpoint)
        self.endpoint = self.socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.peer = b""

    def receive(self, relay: Relay | None, count: int) -> list[tuple[str, int, int, dict[str, Any]]]:
        """The next `count` events: (stream, event_id, prev_id, payload), pumping the relay meanwhile (unless
        another thread runs it)."""
        got: list[tuple[str, int, int, dict[str, Any]]] = []

        def more() -> bool:
            if relay is not None:
                relay.pump()
            while self.socket.poll(0, zmq.POLLIN):
                self.peer, word, head, topic, payload = self.socket.recv_multipart()
                assert word == PUB
                stream, event_id, prev_id = HEAD.decode(head)
                wire = codec.unpack_map(payload)
                assert topic == b"k/%d/%d/" % (wire["user_id"], wire["strategy_id"])
                got.append((stream, event_id, prev_id, wire))
            return len(got) >= count

        wait_until(more, timeout=5, what=f"{count} events at the stand-in broker")
        return got

    def answer(self, word: bytes, stream: str, value: int, reason: bytes | None = None) -> None:
        frames = [self.peer, word, codec.pack([stream, value])]
        self.socket.send_multipart(frames if reason is None else [*frames, reason])


@pytest.fixture
def broker(zctx: zmq.Context[Any]) -> Iterator[StandInBroker]:
    stand_in = StandInBroker(zctx)
    yield stand_in
    stand_in.socket.close()


def make_relay(world: World, endpoint: str, ctx: zmq.Context[Any], limits: WindowLimits = CALM) -> Relay:
    return Relay(world.sessions, "orders", endpoint, context=ctx, limits=limits)


def summary(user_id: int, created: int) -> OrderBatchEvent:
    return OrderBatchEvent(summaries=(Summary(order_type="LIMIT", created=created, cancelled=0),),
                           strategy_id=1, user_id=user_id, timestamp="2025-01-06T09:30:00.000000Z")


def commit_events(world: World, *events: OrderBatchEvent) -> list[Row]:
    written = Written("orders")
    with world.sessions() as session:
        for event in events:
            written.add(session, event)
        session.commit()
    return written.rows()


def sent_marks(world: World) -> list[tuple[int, bool, str | None]]:
    with world.sessions() as session:
        query = select(OutboxEvent.id, OutboxEvent.sent_at, OutboxEvent.failed).order_by(OutboxEvent.id)
        return [(i, sent is not None, failed) for i, sent, failed in session.execute(query)]


def test_committed_events_reach_the_broker_in_order_and_are_marked_sent_once_acknowledged(
    world: World, broker: StandInBroker, zctx: zmq.Context[Any]
) -> None:
    relay = make_relay(world, broker.endpoint, zctx)
    assert relay.stream.startswith("orders:") and len(relay.stream) == len("orders:") + 32
    rows = commit_events(world, *(summary(world.user_ids["alice"], n) for n in range(1, 6)))
    assert [r.id for r in rows] == sorted(r.id for r in rows)  # ids follow the order of the writes
    relay.offer(rows)
    first = broker.receive(relay, 4)  # the window
    assert [(s, i, p) for s, i, p, _ in first] == [(relay.stream, r.id, prev) for r, prev in zip(rows, [0, *[r.id for r in rows]])][:4]
    assert [from_wire(w) for *_, w in first] == [summary(world.user_ids["alice"], n) for n in range(1, 5)]
    assert all(type(w["published_ns"]) is int for *_, w in first)
    broker.answer(ACK, relay.stream, rows[3].id)
    (fifth,) = broker.receive(relay, 1)
    assert fifth[1:3] == (rows[4].id, rows[3].id)
    wait_until(lambda: (relay.pump(), sent_marks(world)[3][1])[1], what="the ack marked in the database")
    assert [sent for _, sent, _ in sent_marks(world)] == [True] * 4 + [False]
    broker.answer(ACK, relay.stream, rows[4].id)
    wait_until(lambda: (relay.pump(), relay.idle)[1], what="the relay idle")
    assert outbox.stream_name(world.sessions, "orders") == relay.stream  # kept in the database
    relay.close()


def test_a_restarted_relay_resends_what_was_not_confirmed_and_follows_a_broker_ahead_of_the_database(
    world: World, broker: StandInBroker, zctx: zmq.Context[Any]
) -> None:
    rows = commit_events(world, *(summary(world.user_ids["bob"], n) for n in range(1, 4)))
    first = make_relay(world, broker.endpoint, zctx)
    first.offer(rows)
    broker.receive(first, 3)
    broker.answer(ACK, first.stream, rows[0].id)
    wait_until(lambda: (first.pump(), sent_marks(world)[0][1])[1], what="the first ack marked")
    first.close()  # "killed" after the broker sequenced all three, with only the first marked
    second = make_relay(world, broker.endpoint, zctx)
    assert second.stream == first.stream
    resent = broker.receive(second, 2)
    assert [(i, p) for _, i, p, _ in resent] == [(rows[1].id, rows[0].id), (rows[2].id, rows[1].id)]
    broker.answer(ACK, second.stream, rows[2].id)  # duplicates: the broker answers its last
    wait_until(lambda: (second.pump(), second.idle)[1], what="the resent rows confirmed")
    assert [sent for _, sent, _ in sent_marks(world)] == [True] * 3
    second.close()


@pytest.mark.expect_log("rejected by the broker")
def test_resend_rewinds_and_reject_marks_the_row_failed_and_goes_on(
    world: World, broker: StandInBroker, zctx: zmq.Context[Any], caplog: pytest.LogCaptureFixture
) -> None:
    relay = make_relay(world, broker.endpoint, zctx)
    rows = commit_events(world, *(summary(world.user_ids["alice"], n) for n in range(1, 4)))
    relay.offer(rows)
    broker.receive(relay, 3)
    broker.answer(RESEND, relay.stream, rows[0].id)  # 2 was lost in transit
    again = broker.receive(relay, 2)
    assert [(i, p) for _, i, p, _ in again] == [(rows[1].id, rows[0].id), (rows[2].id, rows[1].id)]
    with caplog.at_level("ERROR"):
        broker.answer(REJECT, relay.stream, rows[1].id, b"summaries: bad")
        broker.answer(ACK, relay.stream, rows[2].id)
        wait_until(lambda: (relay.pump(), relay.idle)[1], what="the relay idle")
    # Written at once when the ack comes with the reject, else within MARK_EVERY_S of the reject's write.
    marks = [(rows[0].id, True, None), (rows[1].id, True, "summaries: bad"), (rows[2].id, True, None)]
    wait_until(lambda: (relay.pump(), sent_marks(world) == marks)[1], what="the marks written")
    assert relay.window.stats.rejected == 1 and "rejected by the broker" in caplog.text
    relay.close()


@pytest.mark.expect_log("rejected by the broker")
def test_a_reject_heard_again_is_written_again_but_not_counted_or_logged_as_an_error_again(
    world: World, broker: StandInBroker, zctx: zmq.Context[Any], caplog: pytest.LogCaptureFixture
) -> None:
    relay = make_relay(world, broker.endpoint, zctx)
    rows = commit_events(world, *(summary(world.user_ids["alice"], n) for n in range(1, 4)))
    relay.offer(rows)
    broker.receive(relay, 3)
    with caplog.at_level("INFO"):
        broker.answer(REJECT, relay.stream, rows[0].id, b"summaries: bad")
        broker.answer(ACK, relay.stream, rows[2].id)  # past row 2 with no reject: a broker before the untold rejects
        wait_until(lambda: (relay.pump(), relay.idle)[1], what="the relay idle")
        # A broker tells a new connection every rejection it remembers: one the relay had, one it never had.
        broker.answer(REJECT, relay.stream, rows[0].id, b"summaries: bad")
        broker.answer(REJECT, relay.stream, rows[1].id, b"summaries: worse")
        marks = [(rows[0].id, True, "summaries: bad"), (rows[1].id, True, "summaries: worse"), (rows[2].id, True, None)]
        wait_until(lambda: (relay.pump(), sent_marks(world) == marks)[1], what="both reasons written")
    assert relay.window.stats.rejected == 1  # counted when first heard (failed before: 3)
    assert caplog.text.count("rejected by the broker") == 1 and "rejected again by the broker" in caplog.text
    relay.close()


def test_unknown_gets_hello_with_the_last_confirmed_then_the_rows_after_it(
    world: World, broker: StandInBroker, zctx: zmq.Context[Any]
) -> None:
    relay = make_relay(world, broker.endpoint, zctx)
    rows = commit_events(world, *(summary(world.user_ids["alice"], n) for n in range(1, 4)))
    relay.offer(rows)
    broker.receive(relay, 3)
    broker.answer(ACK, relay.stream, rows[0].id)
    broker.answer(UNKNOWN, relay.stream, rows[2].id)  # a broker that lost the stream got row 3 only

    def hello() -> list[bytes] | None:
        relay.pump()
        return broker.socket.recv_multipart()[1:] if broker.socket.poll(0, zmq.POLLIN) else None

    assert wait_until(hello, what="the relay's hello") == protocol.hello_message(relay.stream, rows[0].id)
    again = broker.receive(relay, 2)
    assert [(i, p) for _, i, p, _ in again] == [(rows[1].id, rows[0].id), (rows[2].id, rows[1].id)]
    relay.close()


@pytest.fixture
def late_endpoint() -> Iterator[str]:
    """An endpoint nobody listens on until the test binds it: reserved for the test (tests/ports.py)."""
    with reserved_ports(1) as (port,):
        yield f"tcp://127.0.0.1:{port}"


def test_rows_committed_while_no_broker_listens_go_out_once_it_binds(world: World, zctx: zmq.Context[Any],
                                                                     late_endpoint: str) -> None:
    endpoint = late_endpoint
    relay = make_relay(world, endpoint, zctx, FAST)  # its retry is what reaches the late broker
    rows = commit_events(world, summary(world.user_ids["alice"], 1))
    relay.offer(rows)
    assert relay.window.in_flight == 0 and relay.deadline() is not None  # refused: no connection yet
    late = StandInBroker(zctx, endpoint)
    got = late.receive(relay, 1)
    # Unanswered, the row is sent again at each retry (FAST: every 50-200 ms): the same row, maybe more than once.
    assert {(event_id, prev_id) for _, event_id, prev_id, _ in got} == {(rows[0].id, 0)}
    late.socket.close()
    relay.close()


@pytest.mark.expect_log("ignored")
def test_answers_for_another_stream_or_malformed_are_ignored(world: World, broker: StandInBroker, zctx: zmq.Context[Any]) -> None:
    relay = make_relay(world, broker.endpoint, zctx)
    relay.offer(commit_events(world, summary(world.user_ids["alice"], 1)))
    broker.receive(relay, 1)
    broker.answer(ACK, "orders:" + "0" * 32, 99)
    broker.socket.send_multipart([broker.peer, ACK, b"\xc1"])
    broker.socket.send_multipart([broker.peer, b"hello"])
    wait_until(lambda: (relay.pump(), relay.malformed == 3)[1], what="three ignored answers")
    assert relay.window.acked == 0 and relay.window.stats.acked == 0
    relay.close()


def test_prune_keeps_unsent_and_rejected_rows_and_recent_sent_ones(world: World) -> None:
    rows = commit_events(world, *(summary(world.user_ids["alice"], n) for n in range(1, 6)))
    ids = [r.id for r in rows]
    old = utc_now() - timedelta(seconds=outbox.RETAIN_S + 60)
    with world.sessions() as session:
        session.execute(update(OutboxEvent).where(OutboxEvent.id.in_(ids[:3])).values(sent_at=old))
        session.execute(update(OutboxEvent).where(OutboxEvent.id == ids[1]).values(failed="bad"))
        session.execute(update(OutboxEvent).where(OutboxEvent.id == ids[3]).values(sent_at=utc_now()))
        assert outbox.prune(session, "orders") == 2
        assert outbox.prune(session, "positions") == 0
        session.commit()
    assert [i for i, _, _ in sent_marks(world)] == ids[1:2] + ids[3:]


def test_rows_in_flight_when_a_broker_without_journal_dies_reach_the_next_one(
    world: World, zctx: zmq.Context[Any], tmp_path: Path
) -> None:
    """SIGSTOP, then SIGKILL, with rows sent: they die in the socket; the restarted broker must get them again.

    Before `unknown`/`hello`, the new broker took the next row whatever its prev_id and its ack
    covered the lost rows: they were marked sent and never on the stream.
    """
    broker = BrokerProcess(tmp_path).start()  # no --journal: a new broker remembers no stream
    relay = make_relay(world, broker.endpoints["ack_ingress"], zctx)
    user = world.user_ids["alice"]
    try:
        relay.offer(commit_events(world, *(summary(user, n) for n in (1, 2))))
        wait_until(lambda: (relay.pump(), relay.idle)[1], what="rows 1-2 confirmed")
        broker.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        relay.offer(commit_events(world, *(summary(user, n) for n in (3, 4))))
        relay.pump()
        assert relay.window.in_flight == 2  # sent into a connection whose broker is frozen
        broker.kill()
        broker.start()  # same ports, a new epoch, no streams
        relay.offer(commit_events(world, summary(user, 5)))  # goes out as soon as the DEALER reconnects
        wait_until(lambda: (relay.pump(), relay.idle)[1], what="rows 3-5 confirmed by the new broker")
        assert [created for created, _ in new_broker_history(zctx, broker, user)] == [3, 4, 5]
        wait_until(lambda: (relay.pump(), all(sent for _, sent, _ in sent_marks(world)))[1], what="all 5 marked sent")
    finally:
        relay.close()
        broker.kill()


def new_broker_history(ctx: zmq.Context[Any], broker: BrokerProcess, user_id: int) -> list[tuple[int, int]]:
    """(created, seq) of every order summary the broker's history holds for (user_id, strategy 1)."""
    return [(payload["summaries"][0]["created"], seq) for seq, payload in history(ctx, broker, StreamKey(user_id, 1))[1]]
