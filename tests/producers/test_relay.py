"""The outbox relay against a real ROUTER socket standing in as the broker (and a real broker killed), on the demo database."""

from __future__ import annotations

import shutil
import signal
import sqlite3
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
from tests.producers.conftest import World, world_of
from tests.waiting import wait_until

FAST = WindowLimits(window=4, retry_s=0.05, max_retry_s=0.2)
# No timeout fires within a test: the stand-in's answers alone drive the relay, however slow the machine
# (with FAST's 50 ms, a loaded machine's late answer let a timeout rewind first, and resends came twice).
CALM = WindowLimits(window=4, retry_s=60.0, max_retry_s=60.0)
HEAD = codec.Schema[tuple[str, int, int]](tuple[str, int, int])


class StandInBroker:
    """A bound ROUTER: it receives what the relay sends and answers what the test says (a `hello`: `ack acked`,
    when the test does not `greet` the relay itself)."""

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
                frames = self.socket.recv_multipart()
                if frames[1] == protocol.HELLO:  # a relay's start (or a second hello): where it is, as a broker would
                    self.peer = frames[0]
                    self.answer(ACK, *protocol.unpack_hello(frames[2]))
                    continue
                self.peer, word, head, topic, payload = frames
                assert word == PUB
                stream, event_id, prev_id = HEAD.decode(head)
                wire = codec.unpack_map(payload)
                assert topic == b"k/%d/%d/" % (wire["user_id"], wire["strategy_id"])
                got.append((stream, event_id, prev_id, wire))
            return len(got) >= count

        wait_until(more, timeout=5, what=f"{count} events at the stand-in broker")
        return got

    def greet(self, relay: Relay, last: int | None = None) -> int:
        """The relay's `hello` at its start, answered `ack last` (default: the hello's own acked); its acked."""

        def hello() -> list[bytes] | None:
            relay.pump()
            return self.socket.recv_multipart() if self.socket.poll(0, zmq.POLLIN) else None

        self.peer, word, body = wait_until(hello, timeout=5, what="the relay's hello")
        assert word == protocol.HELLO
        stream, acked = protocol.unpack_hello(body)
        assert stream == relay.stream
        self.answer(ACK, stream, acked if last is None else last)
        return acked

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
    assert broker.greet(relay) == 0
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


def test_a_restarted_relay_asks_where_the_broker_is_and_sends_what_follows_or_all_it_did_not_confirm(
    world: World, broker: StandInBroker, zctx: zmq.Context[Any]
) -> None:
    rows = commit_events(world, *(summary(world.user_ids["bob"], n) for n in range(1, 5)))
    first = make_relay(world, broker.endpoint, zctx)
    broker.greet(first)
    first.offer(rows)
    broker.receive(first, 4)
    broker.answer(ACK, first.stream, rows[0].id)
    wait_until(lambda: (first.pump(), sent_marks(world)[0][1])[1], what="the first ack marked")
    first.close()  # "killed" after the broker sequenced three, with only the first marked
    second = make_relay(world, broker.endpoint, zctx)
    assert second.stream == first.stream
    assert broker.greet(second, last=rows[2].id) == rows[0].id  # hello 1, and the broker has 3
    (rest,) = broker.receive(second, 1)
    assert rest[1:3] == (rows[3].id, rows[2].id)
    broker.answer(ACK, second.stream, rows[3].id)
    wait_until(lambda: (second.pump(), second.idle)[1], what="the rest confirmed")
    wait_until(lambda: (second.pump(), [sent for _, sent, _ in sent_marks(world)] == [True] * 4)[1], what="all marked")
    second.close()
    third = make_relay(world, broker.endpoint, zctx)  # started with every row marked: hello names the last
    assert broker.greet(third) == rows[3].id
    third.close()


@pytest.mark.expect_log("rejected by the broker")
def test_resend_rewinds_and_reject_marks_the_row_failed_and_goes_on(
    world: World, broker: StandInBroker, zctx: zmq.Context[Any], caplog: pytest.LogCaptureFixture
) -> None:
    relay = make_relay(world, broker.endpoint, zctx)
    broker.greet(relay)
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
    broker.greet(relay)
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
    broker.greet(relay)
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
    late.greet(relay)
    got = late.receive(relay, 1)
    # Unanswered, the row is sent again at each retry (FAST: every 50-200 ms): the same row, maybe more than once.
    assert {(event_id, prev_id) for _, event_id, prev_id, _ in got} == {(rows[0].id, 0)}
    late.socket.close()
    relay.close()


@pytest.mark.expect_log("ignored")
def test_answers_for_another_stream_or_malformed_are_ignored(world: World, broker: StandInBroker, zctx: zmq.Context[Any]) -> None:
    relay = make_relay(world, broker.endpoint, zctx)
    broker.greet(relay)
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


def test_prune_keeps_the_newest_row_of_a_source_however_old_it_is(world: World) -> None:
    """Its id is the highest the database gave the stream, which the relay needs to tell a restored database."""
    ids = [r.id for r in commit_events(world, *(summary(world.user_ids["alice"], n) for n in range(1, 4)))]
    with world.sessions() as session:
        old = utc_now() - timedelta(seconds=outbox.RETAIN_S + 60)
        session.execute(update(OutboxEvent).where(OutboxEvent.id.in_(ids)).values(sent_at=old))
        assert outbox.prune(session, "orders") == 2  # failed before: 3
        session.commit()
        assert outbox.last_id(session, "orders") == ids[-1] and outbox.last_id(session, "positions") == 0
    assert [i for i, _, _ in sent_marks(world)] == ids[-1:]


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


@pytest.mark.expect_log("older than its stream")
def test_a_database_restored_from_a_backup_gets_a_new_stream_and_loses_none_of_its_new_events(
    world: World, zctx: zmq.Context[Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The restored database holds the stream name of its original, which the broker has up to row 4, and
    gives its next rows ids 3 and 4 again: the broker took them for duplicates (`ack 4`) and they were marked
    sent, never on the stream. Its relay now finds the broker beyond anything it held and moves to a new stream."""
    database = Path(world.url.removeprefix("sqlite:///"))
    backup = tmp_path / "backup.db"
    broker = BrokerProcess(tmp_path).start()
    user = world.user_ids["alice"]
    relay = make_relay(world, broker.endpoints["ack_ingress"], zctx)
    try:
        relay.offer(commit_events(world, *(summary(user, n) for n in (1, 2))))
        wait_until(lambda: (relay.pump(), relay.idle)[1], what="rows 1-2 confirmed")
        relay.write_marks()
        source, copy = sqlite3.connect(database), sqlite3.connect(backup)
        source.backup(copy)  # what `sqlite3 tradestream.db ".backup backup.db"` does
        source.close()
        copy.close()
        relay.offer(commit_events(world, *(summary(user, n) for n in (3, 4))))
        wait_until(lambda: (relay.pump(), relay.idle)[1], what="rows 3-4 confirmed")
        relay.close()
        world.engine.dispose()
        for journal in (database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
            journal.unlink(missing_ok=True)  # none is left once the last connection closed; a restore drops them
        shutil.copyfile(backup, database)  # restored: rows 3-4 are gone, their ids will come again
        restored = world_of(world.url, {"users": [], "strategies": [], "accounts": []})
        with caplog.at_level("ERROR"):
            relay = make_relay(restored, broker.endpoints["ack_ingress"], zctx)
            old_stream = relay.stream
            rows = commit_events(restored, *(summary(user, n) for n in (5, 6)))
            assert [r.id for r in rows] == [3, 4]
            relay.offer(rows)
            wait_until(lambda: (relay.pump(), relay.idle)[1], what="rows 5-6 confirmed")
        assert [created for created, _ in new_broker_history(zctx, broker, user)] == [1, 2, 3, 4, 5, 6]  # failed: 1-4
        assert relay.stream != old_stream and "older than its stream (restored from a backup, or a copy)" in caplog.text
        assert outbox.stream_name(restored.sessions, "orders") == relay.stream  # kept for the next start
        restored.engine.dispose()
    finally:
        relay.close()
        broker.kill()
