"""A relay SIGKILLed after the broker's `reject` arrived and before it wrote it: the rejection survives its restart, and the broker's.

The orders process runs under the crash-point launcher (tests/faults/crashpoint.py), armed to
kill itself right before its first `Relay.write_marks`; its outbox holds a row the broker's
schema refuses, then a valid one, so the first answers it reads are that `reject` (and the ack
after it). Restarted, the relay says `hello` with its last written mark: the broker, which
sequenced the valid row and counted the bad one as handled, must answer `reject` of the bad one
again (not an `ack` past it), so the row keeps its failure reason, and sequence nothing twice; also when the broker itself is SIGKILLed and restarted in between (its journal
keeps the rejection).
"""

from __future__ import annotations

from typing import Any

import pytest
import zmq
from sqlalchemy import select

from bus import codec, protocol
from bus.topics import StreamKey, key_topic
from store.handoff import OutboxEvent
from tests.bus.conftest import broker_stats, make_order, request
from tests.faults.crashpoint import CrashPoint
from tests.faults.stack import Stack
from tests.producers.conftest import World
from tests.waiting import wait_until

CRASH = CrashPoint("orders", "before", "producers.relay:Relay.write_marks", 1)


def outbox_rows(world: World) -> list[tuple[int, bool, str | None]]:
    with world.sessions() as session:
        query = select(OutboxEvent.id, OutboxEvent.sent_at, OutboxEvent.failed).where(OutboxEvent.source == "orders")
        return [(id_, sent is not None, failed) for id_, sent, failed in session.execute(query.order_by(OutboxEvent.id))]


def commit_bad_then_good(world: World) -> StreamKey:
    """Two outbox rows of orders: one the broker's schema refuses, then a valid one; their key."""
    key = StreamKey(world.user_ids["alice"], world.strategy_ids["btc-trend"])
    bad = codec.pack({**make_order(*key, order_id="bad").to_wire(), "quantity": "lots"})
    good = codec.pack(make_order(*key, order_id="good").to_wire())
    with world.sessions() as session:
        for payload in (bad, good):
            session.add(OutboxEvent(source="orders", topic=key_topic(key), payload=payload))
        session.commit()
    return key


def assert_rejected_once_and_good_sequenced_once(world: World, stack: Stack, zctx: zmq.Context[Any], key: StreamKey) -> None:
    wait_until(lambda: all(sent for _, sent, _ in outbox_rows(world)), timeout=20, what="both rows marked sent")
    (_, _, failed), (_, _, ok) = outbox_rows(world)
    assert failed is not None and "quantity" in failed and ok is None
    _, pair = request(zctx, stack.bus["replay"], *protocol.replay_request(key_topic(key), 0, protocol.HEAD_ONLY))
    epoch, head = protocol.unpack_int_pair(pair)
    status, _, *frames = request(zctx, stack.bus["replay"], *protocol.replay_request(key_topic(key), epoch, 0))
    assert status == protocol.OK and head == 1  # sequenced once, the bad one never
    assert [codec.unpack_map(payload)["order_id"] for payload in frames[1::2]] == ["good"]


@pytest.mark.expect_log("rejected by the broker")
def test_a_relay_killed_between_a_reject_and_writing_it_keeps_the_failure_reason_after_restart(
    world: World, idle_stack: Stack, zctx: zmq.Context[Any]
) -> None:
    stack = idle_stack
    key = commit_bad_then_good(world)
    stack.start("broker")
    stack.start("orders", armed=CRASH)
    stack.crashed_at(CRASH)
    assert [sent for _, sent, _ in outbox_rows(world)] == [False, False]  # killed before any mark was written
    stack.start("orders")
    assert_rejected_once_and_good_sequenced_once(world, stack, zctx, key)


@pytest.mark.expect_log("rejected by the broker")
def test_the_rejection_survives_a_broker_sigkill_between_the_relay_crash_and_its_restart(
    world: World, idle_stack: Stack, zctx: zmq.Context[Any]
) -> None:
    """The broker remembers its rejections in its journal: SIGKILLed and restarted, it still answers `reject`
    (with the reason) to the relay that died before writing it, not the `ack` of a duplicate."""
    stack = idle_stack
    key = commit_bad_then_good(world)
    stack.start("broker")
    stack.start("orders", armed=CRASH)
    stack.crashed_at(CRASH)
    assert [sent for _, sent, _ in outbox_rows(world)] == [False, False]
    stack.crash_and_restart("broker")  # SIGKILL: only its journal carries the rejection over
    stack.start("orders")
    assert_rejected_once_and_good_sequenced_once(world, stack, zctx, key)
    assert "1 rejections" in (stack.folder / "broker.log").read_text()  # the restored journal's log line
    # Restored rejections are untold: the restarted relay heard this one with the answer to its start `hello`.
    assert broker_stats(zctx, stack.bus["replay"])["ack_hellos"] >= 1
