"""Fills for the position handler's tests: MARKET signals of btc-trend (alice's and bob's accounts) and eth-swing
(alice's and carol's), both sides, so positions open, grow, shrink and flip, written as the order handler does."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select

from bus import codec
from producers import inbox
from producers.commands import SignalCommand
from producers.orders import OrderHandler
from producers.signals import OrderSpec
from store.handoff import Execution, OutboxEvent
from tests.producers.conftest import World

MOMENTS = ("published_ns", "timestamp")  # what two runs of the same fills may differ in


def write_fills(world: World, signals: int, shift: int = 0) -> list[int]:
    """`signals` MARKET signals alternating over btc-trend and eth-swing, each filled on two accounts (prices
    `shift` higher): the ids of every fill written so far."""
    orders = OrderHandler(world.sessions, lambda rows: None, lambda ids: None)
    with world.sessions() as session:
        for n in range(signals):
            group, symbol, price = ("btc-trend", "BTC/USDT", 90_000 + 7 * n + shift) if n % 2 else ("eth-swing", "ETH/USDT", 3_000 + n + shift)
            side = "SELL" if n % 3 == 2 else "BUY"
            spec = OrderSpec("MARKET", symbol, side, Decimal(price), None, Decimal(1 + n % 4))
            inbox.put(session, SignalCommand(group, (spec,)))
        session.commit()
    orders.catch_up(lambda: False)
    with world.sessions() as session:
        return list(session.scalars(select(Execution.id).order_by(Execution.id)))


def position_events(world: World) -> list[dict[str, Any]]:
    """The position handler's outbox rows in commit order, without the moments they were written."""
    with world.sessions() as session:
        query = select(OutboxEvent.payload).where(OutboxEvent.source == "positions").order_by(OutboxEvent.id)
        events = [codec.unpack_map(payload) for payload in session.scalars(query)]
    return [{k: v for k, v in event.items() if k not in MOMENTS} for event in events]
