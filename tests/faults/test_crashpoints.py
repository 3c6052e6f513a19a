"""A process SIGKILLed at one exact point of a hand-off, then restarted: nothing accepted lost, nothing done twice.

tests/faults/test_crashes.py kills at a random moment of a burst; here each
case arms one process (tests/faults/crashpoint.py) to kill itself right before
or after the N-th call of the function that is one side of a hand-off, sends a
round of work through the whole pipeline, waits for that death, restarts the
process as supervisord would and checks tests/faults/invariants.py. The
hand-offs, in the order work crosses them:

    webhook   checks ─▶ Intake._enqueue (Signal + inbox row, one commit) ─▶ 200 (send_json) ─▶ wake orders
    orders    inbox.claim · Trader.apply ─▶ commit (orders, executions, outbox, inbox handled) ─▶ Relay.offer
              (sent) ─▶ FillWakes ─▶ …  broker's ack ─▶ Relay.write_marks (outbox sent_at, one commit)
    broker    ack-ingress ─▶ sequence ─▶ Journal.write (commit) ─▶ publish ─▶ ack_message ─▶ the relay
    positions fills.claim · _fold ─▶ commit (position, outbox, fill applied) ─▶ Relay.offer … write_marks;
              a tick without fills: remark ─▶ commit (position_marked rows) ─▶ Relay.offer
    streamer  the broker's SUB ─▶ Hub.on_events ─▶ write_live ─▶ the browser, which resumes with Last-Event-ID

A round is six signals posted one at a time (MARKET fills of both sides and a
resting LIMIT, two accounts each: alice's and bob's keys of btc-trend), then a
tick that fills the LIMITs and one that fills nothing (a re-mark), as the
replay tool stores them; a tail round is one signal whose orders only rest,
so that nothing comes after the point. Besides the invariants, the round's
first tick must have filled its LIMITs (a tick row marked handled without
its work would pass them). N is counted from the armed start, at a settled
moment, so it names the same step of every round. One stack serves the
module's cases (a start costs ~0.7 s of CPU per process): each case restarts
only the process it arms; a failed case leaves its stack for a new one, so it
cannot fail the next. PG_POINTS run again on a rig whose database is a fresh
PostgreSQL schema (skipped without TRADESTREAM_TEST_DATABASE_URL).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bus.publisher import Publisher
from bus.topics import StreamKey
from producers import inbox
from producers.commands import WAKE, TickCommand
from store.models import Order, Signal
from tests.faults import invariants
from tests.faults.conftest import ON_POSTGRESQL, POSTGRESQL, demo_database
from tests.faults.crashpoint import CrashPoint
from tests.faults.stack import ORDER, Follower, Sender, Stack, signal_bodies
from tests.producers.conftest import World
from tests.waiting import wait_until

# One worker runs all of them (--dist loadgroup, setup.cfg), so the module's `rigs` starts once, not once per worker.
pytestmark = pytest.mark.xdist_group("crashpoint-rigs")

SIGNALS = 6
# The first fills the round's SELL LIMITs (at 50,003); the second crosses nothing (only moves the marks), so a
# first tick that was lost is not made up for by the second.
TICKS = (Decimal(60_000), Decimal(40_000))
ROUND_S = 60.0
SETTLE_S = 30.0


@dataclass(frozen=True)
class Case:
    """A crash point, the round it is met in, and the processes that die with it (a host losing power)."""

    crash: CrashPoint
    tail: bool = False
    also: tuple[str, ...] = ()

    @property
    def dead(self) -> list[str]:
        """Every process killed, in the order a restart starts them."""
        return [name for name in ORDER if name == self.crash.process or name in self.also]


def point(
    process: str, when: str, target: str, nth: int, *, nonempty: bool = False, tail: bool = False, also: tuple[str, ...] = ()
) -> Any:
    case = Case(CrashPoint(process, when, target, nth, nonempty), tail, also)
    name = f"{process}-{when}-{target.split(':')[1]}-{nth}" + ("-tail" if tail else "") + "".join(f"+{a}" for a in also)
    return pytest.param(case, id=name)


# N = 3: the third signal, command, commit or fill of the round, counts that do not depend on timing. What is
# counted per batch (journal commits, acks, marks written, deliveries to the streamer) is 1, the round's first:
# a loaded machine may gather the whole round into two batches. nonempty: offers of a commit that wrote events.
POINTS = [
    # Checked, nothing stored, no answer: the retry is a new signal.
    point("webhook", "before", "producers.intake:Intake._enqueue", 3),
    # Stored, not answered, orders not woken: the retry is a duplicate, the sweep finds the row.
    point("webhook", "after", "producers.intake:Intake._enqueue", 3),
    # Answered 200 (and orders woken), then dead.
    point("webhook", "after", "producers.webhook:send_json", 3),
    # The command applied to the exchange in memory, not committed: the restart restores the exchange.
    point("orders", "after", "producers.trading:Trader.apply", 3),
    # The tick applied (resting orders filled in memory), not committed.
    point("orders", "after", "producers.trading:Trader.apply", SIGNALS + 1),
    # Committed (orders, executions, outbox, inbox handled): nothing sent, positions not woken.
    point("orders", "before", "producers.relay:Relay.offer", 3, nonempty=True),
    # Sent to the broker, not acknowledged; positions not woken.
    point("orders", "after", "producers.relay:Relay.offer", 3, nonempty=True),
    # The first tick's fills committed and sent, the position handler never woken for them (the five MARKET
    # signals' wake-ups came first), and the round waits for them: only the position handler's sweep finds them.
    point("orders", "before", "producers.orders:FillWakes.__call__", SIGNALS, nonempty=True),
    # Acknowledged by the broker, the mark not written.
    point("orders", "before", "producers.relay:Relay.write_marks", 1),
    # The mark written.
    point("orders", "after", "producers.relay:Relay.write_marks", 1),
    # The fill folded into its position in the transaction, not committed.
    point("positions", "after", "producers.positions:PositionHandler._fold", 3),
    # The fill's position and events committed, nothing sent.
    point("positions", "before", "producers.relay:Relay.offer", 3, nonempty=True),
    # Sent, not acknowledged.
    point("positions", "after", "producers.relay:Relay.offer", 3, nonempty=True),
    # Acknowledged, the mark not written.
    point("positions", "before", "producers.relay:Relay.write_marks", 1),
    # The re-mark of the second tick committed, not sent: its offer follows one per fill (5 x 2 + 2).
    point("positions", "before", "producers.relay:Relay.offer", 2 * (SIGNALS - 1) + 2 + 1, nonempty=True),
    # A batch sequenced in memory, not journaled: nothing published or acknowledged.
    point("broker", "before", "bus.journal:Journal.write", 1),
    # Journaled, not published nor acknowledged; the events after it show the streamer the gap.
    point("broker", "after", "bus.journal:Journal.write", 1),
    # Journaled and published, not acknowledged.
    point("broker", "before", "bus.protocol:ack_message", 1),
    # Tails: the round is one signal whose orders only rest (a BUY LIMIT far below the ticks): nothing comes after
    # the point on either key, so no later event, wake-up or gap makes up for what the restart does not recover.
    # Journaled, never published, and nothing after it: the streamer learns of it from the restarted broker.
    point("broker", "after", "bus.journal:Journal.write", 1, tail=True),
    # Stored, not answered, not woken; the retry is a duplicate (which wakes nobody): only the sweep finds it.
    point("webhook", "after", "producers.intake:Intake._enqueue", 1, tail=True),
    # Committed, never sent: only the restarted relay's first read of the outbox sends it.
    point("orders", "before", "producers.relay:Relay.offer", 1, nonempty=True, tail=True),
    # The broker dies before journaling, and the relays with it (one host losing power): no relay may count
    # as done what the broker did not journal, since no later row of theirs makes the broker ask for it.
    point("broker", "before", "bus.journal:Journal.write", 1, tail=True, also=("orders", "positions")),
    # Events read off the bus, not written to any client.
    point("streamer", "before", "streamer.hub:Hub.on_events", 1),
    # Written to the clients' buffers (perhaps not to their sockets).
    point("streamer", "after", "streamer.fanout:write_live", 1),
]


class Rig:
    """The stack on its own demo database, and a follower per key of btc-trend."""

    def __init__(self, folder: Path, world: World, demo: dict[str, Any]) -> None:
        self.world = world
        self.stack = Stack(self.world, folder)
        self.demo = demo
        self.followers: dict[StreamKey, Follower] = {}
        self.rounds = 0

    def arm(self, crash: CrashPoint) -> None:
        """Restart the process of `crash` armed with it (the first time: start the whole stack so)."""
        if self.stack.procs:
            self.stack.kill(crash.process)  # at a settled moment: nothing is in flight
            self.stack.start(crash.process, armed=crash)
            return
        self.stack.start(armed=crash)
        strategy = self.world.strategy_ids["btc-trend"]
        tokens = {u["username"]: u["api_token"] for u in self.demo["users"]}
        for name in ("alice", "bob"):
            key = StreamKey(self.world.user_ids[name], strategy)
            self.followers[key] = Follower(self.stack.http_port, strategy, tokens[name])

    def send_round(self, sender: Sender, tag: str, tail: bool) -> None:
        """The round's signals one at a time, each until answered; then its ticks into the inbox, as replay does.

        A tail round is one signal whose orders rest below every tick.
        """
        deadline = time.monotonic() + ROUND_S
        if tail:
            sender.deliver({**signal_bodies(self.world, tag, 1)[0], "side": "buy", "order_type": "LIMIT", "price": "1000"}, deadline)
            return
        for body in signal_bodies(self.world, tag, SIGNALS):
            sender.deliver(body, deadline)
        with Publisher(self.stack.bus["orders"], linger_ms=0) as wakes:
            for price in TICKS:
                with self.world.sessions() as session:
                    inbox.put(session, TickCommand.tick("BTC/USDT", price))
                    session.commit()
                wakes.send(*WAKE)
                # Its fills applied before the next tick: else they are marked at the next one's price, which
                # then moves no mark (the re-mark this round ends with would depend on timing).
                wait_until(self.worked_off, timeout=ROUND_S, what=f"the tick at {price} and its fills applied")

    def worked_off(self) -> bool:
        with self.world.sessions() as session:
            backlog = invariants.backlog(session)
        return not backlog["inbox"] and not backlog["fills"]

    def settled(self) -> bool:
        with self.world.sessions() as session:
            return invariants.settled(session, {key: follower.received for key, follower in self.followers.items()})

    def violations(self, answered: dict[str, int], tag: str) -> list[str]:
        with self.world.sessions() as session:
            problems = invariants.outcomes(session, answered, orders_per_signal=2)
            problems += ticked(session, tag)
            problems += invariants.ledger(session)
            for key, follower in self.followers.items():
                problems += invariants.deliveries(session, key, follower.received)
        return problems

    def close(self) -> None:
        for follower in self.followers.values():
            follower.close()
        self.stack.close()


def ticked(session: Session, tag: str) -> list[str]:
    """The first tick of a round had its effect: it filled the round's SELL LIMITs (a tail round has none)."""
    query = (
        select(Order.order_id, Order.status).join(Signal, Order.signal_id == Signal.id)
        .where(Signal.client_id.startswith(f"{tag}-"), Order.order_type == "LIMIT", Order.side == "SELL")
    )
    return [f"order {order_id}: {status}, the tick should have filled it" for order_id, status in session.execute(query)
            if status != "FILLED"]


class Rigs:
    """The module's rig of each database, made when first needed and again after a case failed on it."""

    def __init__(self, factory: pytest.TempPathFactory, template: tuple[Path, dict[str, Any]]) -> None:
        self.factory, self.template = factory, template
        self.current: dict[str, tuple[Rig, ExitStack]] = {}

    def get(self, backend: str) -> Rig:
        if backend not in self.current:
            folder = self.factory.mktemp(f"crashpoints-{backend}")
            with ExitStack() as held:
                world, demo = held.enter_context(demo_database(backend, folder, self.template))
                rig = Rig(folder, world, demo)
                held.callback(rig.close)  # the stack stops before its database goes
                self.current[backend] = (rig, held.pop_all())
        return self.current[backend][0]

    def discard(self, backend: str) -> None:
        if backend in self.current:
            self.current.pop(backend)[1].close()

    def close(self) -> None:
        for backend in list(self.current):
            self.discard(backend)


@pytest.fixture(scope="module")
def rigs(tmp_path_factory: pytest.TempPathFactory, demo_template: tuple[Path, dict[str, Any]]) -> Iterator[Rigs]:
    made = Rigs(tmp_path_factory, demo_template)
    yield made
    made.close()


@pytest.fixture
def rig(rigs: Rigs, backend: str, request: pytest.FixtureRequest) -> Iterator[Rig]:
    current = rigs.get(backend)
    yield current
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed:
        print(current.stack.logs())
        rigs.discard(backend)


@pytest.mark.parametrize("case", POINTS)
def test_killed_at_a_hand_off_and_restarted_loses_and_repeats_nothing(rig: Rig, case: Case) -> None:
    killed_at_a_hand_off(rig, case)


# The database's hand-offs again on PostgreSQL (a rig of its own, on another worker than the SQLite rig's):
# the webhook's commit, the order handler's exchange and commit, its fills' wake-up, the position handler's
# fold and commit, and a host losing power. The broker's journal and the streamer use no PostgreSQL.
PG_POINTS = [case for case in POINTS if case.id in (
    "webhook-after-Intake._enqueue-3", "orders-after-Trader.apply-3", "orders-before-Relay.offer-3",
    "orders-before-FillWakes.__call__-6", "positions-after-PositionHandler._fold-3", "positions-before-Relay.offer-3",
    "orders-before-Relay.offer-1-tail", "broker-before-Journal.write-1-tail+orders+positions",
)]
assert len(PG_POINTS) == 8, "an id of PG_POINTS names no point of POINTS"


@pytest.mark.xdist_group("crashpoint-rigs-postgresql")
@pytest.mark.parametrize("backend", [pytest.param(POSTGRESQL, marks=ON_POSTGRESQL)], indirect=True)
@pytest.mark.parametrize("case", PG_POINTS)
def test_killed_at_a_hand_off_on_postgresql_loses_and_repeats_nothing(rig: Rig, case: Case) -> None:
    killed_at_a_hand_off(rig, case)


def killed_at_a_hand_off(rig: Rig, case: Case) -> None:
    rig.arm(case.crash)
    rig.rounds += 1
    tag = f"{case.crash.process}-{rig.rounds}"
    sender = Sender(rig.stack.webhook_port)
    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(rig.send_round, sender, tag, case.tail)
        rig.stack.crashed_at(case.crash)
        rig.stack.kill(*case.also)
        rig.stack.start(*case.dead)  # as supervisord would
        sent.result(timeout=ROUND_S)
    try:
        wait_until(rig.settled, timeout=SETTLE_S, what="the backlog worked off and every event delivered", poll=0.05)
    finally:
        assert rig.violations(sender.answered, tag) == []
    assert len(sender.answered) == (1 if case.tail else SIGNALS)
