"""SIGKILL during a burst, then restart: nothing accepted is lost, nothing happens twice (issue 9).

Each test starts the whole pipeline as real processes (broker with --journal,
orders, positions, webhook, a streamer), follows both keys of btc-trend
(alice's and bob's accounts) with real SSE clients, sends a burst of webhooks
and SIGKILLs some processes once a third of it is answered, restarting them at
once as supervisord would. Once the backlog is worked off, the invariants of
tests/faults/invariants.py must hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from bus.topics import StreamKey
from store.handoff import Execution, InboxCommand
from store.models import Order
from tests.faults import invariants
from tests.faults.conftest import ON_BOTH
from tests.faults.stack import Follower, Received, Sender, Stack, signal_bodies
from tests.producers.conftest import World
from tests.waiting import wait_until

BURST = 90
KILL_AFTER = BURST // 3
SETTLE_S = 60.0


class Pipeline:
    """The stack, a sender and a follower per key of btc-trend."""

    def __init__(self, stack: Stack, world: World, demo: dict[str, Any]) -> None:
        self.stack, self.world = stack, world
        strategy = world.strategy_ids["btc-trend"]
        tokens = {u["username"]: u["api_token"] for u in demo["users"]}
        self.keys = [StreamKey(world.user_ids[name], strategy) for name in ("alice", "bob")]
        self.followers = {key: Follower(stack.http_port, strategy, tokens[name]) for key, name in zip(self.keys, ("alice", "bob"))}
        self.sender = Sender(stack.webhook_port)

    def burst_with(self, fault: Any, tag: str) -> None:
        self.sender.burst(signal_bodies(self.world, tag, BURST), during=fault, after=KILL_AFTER)

    def settle(self) -> dict[StreamKey, Received]:
        """Wait until the backlog is done and every committed event reached its client; what they received."""
        def settled() -> bool:
            with self.world.sessions() as session:
                return invariants.settled(session, {key: self.followers[key].received for key in self.keys})
        try:
            wait_until(settled, timeout=SETTLE_S, what="the backlog worked off and every event delivered", poll=0.1)
        finally:
            received = {key: follower.close() for key, follower in self.followers.items()}
        return received

    def violations(self, received: dict[StreamKey, Received]) -> list[str]:
        with self.world.sessions() as session:
            problems = invariants.outcomes(session, self.sender.answered, orders_per_signal=2)
            problems += invariants.ledger(session)
            for key, seen in received.items():
                problems += invariants.deliveries(session, key, seen)
        return problems


@pytest.fixture
def pipeline(stack: Stack, world: World, demo: dict[str, Any]) -> Iterator[Pipeline]:
    running = Pipeline(stack, world, demo)
    yield running
    for follower in running.followers.values():
        follower.close()


def crash(pipeline: Pipeline, *names: str) -> None:
    pipeline.burst_with(lambda: pipeline.stack.crash_and_restart(*names), tag="-".join(names))
    received = pipeline.settle()
    assert pipeline.violations(received) == []
    assert len(pipeline.sender.answered) == BURST
    assert all(seen.events for seen in received.values())


@ON_BOTH
def test_order_handler_killed_during_a_burst(pipeline: Pipeline) -> None:
    crash(pipeline, "orders")


@ON_BOTH
def test_position_handler_killed_during_a_burst(pipeline: Pipeline) -> None:
    crash(pipeline, "positions")


def test_broker_killed_during_a_burst(pipeline: Pipeline) -> None:
    crash(pipeline, "broker")


def test_webhook_killed_during_a_burst_and_every_retry_answered(pipeline: Pipeline) -> None:
    crash(pipeline, "webhook")
    assert pipeline.sender.attempts > BURST  # requests in flight got no answer and were sent again


@ON_BOTH
def test_every_process_killed_at_once_during_a_burst(pipeline: Pipeline) -> None:
    crash(pipeline, "broker", "orders", "positions", "webhook", "streamer")
    assert all(follower.received.connections >= 2 for follower in pipeline.followers.values())


def test_poison_commands_and_fills_are_recorded_failed_and_skipped_while_the_handlers_crash(
    pipeline: Pipeline, world: World
) -> None:
    def first_order() -> Order | None:
        with world.sessions() as session:
            return session.scalars(select(Order).order_by(Order.id)).first()

    def poison_then_crash() -> None:
        order = wait_until(first_order, what="an order to hang a poison fill on")
        with world.sessions() as session:
            session.add(InboxCommand(kind="signal", body='{"group_name": "btc-trend", "orders": 7}'))
            session.add(InboxCommand(kind="tick", body='{"symbol": "BTC/USDT", "price": -1}'))
            session.add(Execution(order_id=order.id, account_id=999_999, strategy_id=1, user_id=1,
                                  symbol="BTC/USDT", side="BUY", quantity=Decimal(1), price=Decimal(1)))  # its account is gone
            session.commit()
        pipeline.stack.crash_and_restart("orders", "positions")

    pipeline.burst_with(poison_then_crash, tag="poison")
    received = pipeline.settle()
    assert pipeline.violations(received) == []
    with world.sessions() as session:
        failed = session.execute(select(InboxCommand.kind, InboxCommand.error).where(InboxCommand.outcome == "failed")).all()
        bad_fills = session.scalars(select(Execution.error).where(Execution.error.is_not(None))).all()
    assert sorted(kind for kind, _ in failed) == ["signal", "tick"] and all(error for _, error in failed)
    assert len(bad_fills) == 1 and "account 999999" in str(bad_fills[0])
