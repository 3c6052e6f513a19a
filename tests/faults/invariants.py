"""What must hold after any crash, read from the database and from what the SSE clients received.

Each check returns its violations as sentences (empty: it holds), so a failing
test names every broken promise at once:

- every signal answered 200 has exactly one outcome: its inbox row handled once,
  and either all its orders (one per linked account) or a recorded rejection or failure;
- every position's quantity is the signed sum of its fills, every fill applied
  once, every order's filled quantity the sum of its fills;
- every committed order and position change (an outbox row) reached the client of
  its key exactly once and in commit order, with contiguous ids of one epoch and
  no `resync`.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bus import codec
from bus.topics import StreamKey, key_topic
from store.handoff import Execution, InboxCommand, OutboxEvent
from store.models import MarketPrice, Order, Position, Signal
from store.money import ZERO
from tests.faults.stack import Received

SOURCE_OF_EVENT = {"order_update": "orders", "order_batch_update": "orders", "position_update": "positions"}
BUS_ONLY = ("kind", "published_ns")


def outcomes(session: Session, answered: dict[str, int], orders_per_signal: int) -> list[str]:
    """Every id answered 200 is stored and has exactly one outcome: all its orders, or a recorded rejection/failure."""
    problems = [f"signal {cid} answered {status}" for cid, status in answered.items() if status != 200]
    signals = {s.client_id: s for s in session.scalars(select(Signal).where(Signal.client_id.in_(list(answered))))}
    problems += [f"signal {cid} answered 200 but not stored" for cid in answered if cid not in signals]
    ids = [s.id for s in signals.values()]
    placed = Counter(session.scalars(select(Order.signal_id).where(Order.signal_id.in_(ids))))
    handled: dict[int, list[InboxCommand]] = defaultdict(list)
    for row in session.scalars(select(InboxCommand).where(InboxCommand.signal_id.in_(ids))):
        handled[row.signal_id].append(row)  # type: ignore[index]  # the query asks for linked rows only
    for cid, signal in signals.items():
        orders, rows = placed.get(signal.id, 0), handled.get(signal.id, [])
        recorded = [r for r in rows if r.outcome in ("rejected", "failed") and r.error]
        if len(rows) > 1:
            problems.append(f"signal {cid}: in the inbox {len(rows)} times")
        if not ((orders == orders_per_signal and not recorded) or (orders == 0 and len(recorded) == 1)):
            problems.append(f"signal {cid}: {orders} orders (expected {orders_per_signal}), outcomes {[r.outcome for r in rows]}")
    return problems


def ledger(session: Session) -> list[str]:
    """Positions equal the signed sum of their applied fills; fills are applied; orders equal their fills (exactly)."""
    problems = [f"fill {e.id} not applied" for e in session.scalars(select(Execution).where(Execution.applied_at.is_(None)))]
    sums: dict[tuple[int, int, str], Decimal] = defaultdict(Decimal)
    filled: dict[int, Decimal] = defaultdict(Decimal)  # summed here: money columns are never summed in SQL
    for e in session.scalars(select(Execution).where(Execution.error.is_(None))):
        sums[(e.account_id, e.strategy_id, e.symbol)] += e.quantity if e.side == "BUY" else -e.quantity
        filled[e.order_id] += e.quantity
    held = {(p.account_id, p.strategy_id, p.symbol): p.quantity for p in session.scalars(select(Position))}
    for key in set(sums) | set(held):
        if sums.get(key, ZERO) != held.get(key, ZERO):
            problems.append(f"position {key}: quantity {held.get(key)} but its fills sum to {sums.get(key)}")
    for order in session.scalars(select(Order)):
        if order.filled_quantity > 0 and filled.get(order.id, ZERO) != order.filled_quantity:
            problems.append(f"order {order.order_id}: filled {order.filled_quantity} but its fills sum to {filled.get(order.id)}")
    return problems


def committed_events(session: Session, key: StreamKey) -> dict[str, list[dict[str, Any]]]:
    """The outbox rows of a key per source, in commit order, as the browser sees their data."""
    query = select(OutboxEvent).where(OutboxEvent.topic == key_topic(key), OutboxEvent.failed.is_(None)).order_by(OutboxEvent.id)
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in session.scalars(query):
        wire = codec.unpack_map(row.payload)
        by_source[row.source].append({k: v for k, v in wire.items() if k not in BUS_ONLY})
    return by_source


def deliveries(session: Session, key: StreamKey, received: Received) -> list[str]:
    """The client of `key` got every committed event once, in order, under one epoch, with no resync."""
    problems = [f"{key}: resync {r}" for r in received.resyncs]
    got: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, event, data in received.events:
        got[SOURCE_OF_EVENT[event]].append(data)
    for source, expected in committed_events(session, key).items():
        if got.get(source, []) != expected:
            problems.append(_difference(key, source, expected, got.get(source, [])))
    ids = [tuple(map(int, event_id.split("-"))) for event_id, _, _ in received.events]
    epochs, seqs = {epoch for epoch, _ in ids}, [seq for _, seq in ids]
    if len(epochs) > 1:
        problems.append(f"{key}: events of {len(epochs)} epochs")
    if seqs and seqs != list(range(seqs[0], seqs[0] + len(seqs))):
        gaps = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1][:5]
        problems.append(f"{key}: ids not contiguous (first breaks: {gaps})")
    return problems


def _difference(key: StreamKey, source: str, expected: list[Any], got: list[Any]) -> str:
    missing = [e for e in expected if e not in got]
    duplicated = [e for e, n in Counter(map(repr, got)).items() if n > 1]
    order = "same events, another order" if not missing and len(got) == len(expected) else ""
    first = f"; first missing: {_brief(missing[0])}" if missing else ""
    return (f"{key} {source}: {len(expected)} committed, {len(got)} received, {len(missing)} missing, "
            f"{len(duplicated)} duplicated {order}{first}")


def _brief(event: dict[str, Any]) -> str:
    fields = ("event_type", "order_id", "position_id", "quantity", "previous_quantity", "mark_price", "timestamp")
    return repr({name: event[name] for name in fields if name in event})


def backlog(session: Session) -> dict[str, int]:
    """What is still to do: pending inbox rows, unapplied fills, open positions not marked at their symbol's
    last tick yet (the position handler's re-mark), unsent outbox rows (all zero: settled)."""
    def count(model: Any, condition: Any) -> int:
        return session.scalar(select(func.count()).select_from(model).where(condition)) or 0
    ticked = {price.symbol: price.price for price in session.scalars(select(MarketPrice))}
    open_positions = session.scalars(select(Position).where(Position.symbol.in_(list(ticked))))
    return {
        "inbox": count(InboxCommand, InboxCommand.handled_at.is_(None)),
        "fills": count(Execution, Execution.applied_at.is_(None)),
        "marks": sum(1 for p in open_positions if not p.quantity.is_zero() and p.mark_price != ticked[p.symbol]),
        "outbox": count(OutboxEvent, OutboxEvent.sent_at.is_(None)),
    }


def settled(session: Session, received: Mapping[StreamKey, Received]) -> bool:
    """No backlog, and every follower has as many events as its key committed (or resynced: those never come)."""
    if any(backlog(session).values()):
        return False
    if any(got.resyncs for got in received.values()):
        return True  # what was missed never comes: the check says so
    return all(len(got.events) >= sum(map(len, committed_events(session, key).values())) for key, got in received.items())
