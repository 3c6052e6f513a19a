"""10,000 fills through the real position handler and a real database: the position is their exact sum.

The fills are Execution rows, as the order handler writes them (one order of bob's
in sol-scalp), applied by PositionHandler.catch_up, one transaction each, reading and
writing the Numeric/decimal-text columns. The quantity it ends with must equal the
sum of the signed fill quantities computed with Decimal, to the last satoshi; the same
sum in floats drifts (printed), which is what the Decimal ledger is for.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bus import codec
from bus.events import PositionEvent, from_wire
from producers.positions import PositionHandler
from producers.relay_window import Row
from store.handoff import Execution
from store.models import Order, Position
from tests.producers.conftest import World, world_at

FILLS = 10_000
SEED = 20261202
QUANTITY_STEP = Decimal("0.00000001")  # SOL/USDT's (store/money.py)
RAM_FOLDER = Path("/dev/shm")


@pytest.fixture
def world(tmp_path: Path, demo_template: tuple[Path, dict[str, Any]]) -> Iterator[World]:
    """The demo world (tests/producers/conftest.py), in a folder in RAM when the machine has a tmpfs at /dev/shm.

    10,000 commits each wait for their fsync on a disk: ~20 of this test's ~47 s on a quiet machine,
    and most of the 230 s it took with the disk shared by a loaded machine. This test is about exact
    sums through the handler and the database, not durability: same SQLite, pragmas and SQL.
    """
    template, demo = demo_template
    with tempfile.TemporaryDirectory(dir=RAM_FOLDER if RAM_FOLDER.is_dir() else tmp_path) as folder:
        path = Path(folder) / "tradestream.db"
        shutil.copyfile(template, path)
        world = world_at(path, demo)
        yield world
        world.engine.dispose()


def random_fills(rng: random.Random) -> list[tuple[str, Decimal, Decimal]]:
    """(side, quantity, price): quantities of 1 to 10^8 satoshis, prices in cents from 1.00 to 500.00."""
    return [
        (rng.choice(("BUY", "BUY", "SELL")), Decimal(rng.randint(1, 10**8)) * QUANTITY_STEP,
         Decimal(rng.randint(100, 50_000)).scaleb(-2))
        for _ in range(FILLS)
    ]


def test_ten_thousand_random_fills_sum_exactly_through_the_position_handler(world: World) -> None:
    fills = random_fills(random.Random(SEED))
    bob, strategy = world.user_ids["bob"], world.strategy_ids["sol-scalp"]
    with world.sessions() as session:
        order = Order(order_id="sum-1", account_id=world.account_ids["bob"], strategy_id=strategy, user_id=bob,
                      symbol="SOL/USDT", side="BUY", order_type="MARKET", quantity=Decimal(1), status="FILLED")
        session.add(order)
        session.flush()
        session.add_all(
            Execution(order_id=order.id, account_id=order.account_id, strategy_id=strategy, user_id=bob,
                      symbol="SOL/USDT", side=side, quantity=quantity, price=price)
            for side, quantity, price in fills
        )
        session.commit()

    events: list[PositionEvent] = []

    def committed(rows: list[Row]) -> None:
        for row in rows:
            event = from_wire(codec.unpack_map(row.payload))
            assert isinstance(event, PositionEvent)
            events.append(event)

    handler = PositionHandler(world.sessions, committed)
    handler.catch_up(lambda: False)

    exact = sum((q if side == "BUY" else -q for side, q, _ in fills), Decimal(0))
    floats = 0.0
    for side, quantity, _ in fills:
        floats += float(quantity) if side == "BUY" else -float(quantity)
    with world.sessions() as session:
        position = session.scalars(select(Position)).one()
        assert session.scalar(select(Execution.id).where(Execution.applied_at.is_(None))) is None
    print(f"{FILLS} fills (seed {SEED}): position {position.quantity}, exact sum {exact},"
          f" float sum {floats!r} (off by {Decimal(repr(floats)) - exact})")
    assert handler.applied == FILLS and handler.failed == 0
    assert position.quantity == exact and position.quantity.as_tuple().exponent == -8
    # Every event carries the running quantity as a decimal string: the last is the sum, digit for digit.
    fill_events = [e for e in events if e.event_type != "position_marked"]
    assert len(fill_events) == FILLS
    assert Decimal(fill_events[-1].quantity) == exact
