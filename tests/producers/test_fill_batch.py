"""Fills applied a batch per transaction: the book's answers, and the same rows and events as one fill a transaction."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from bus import codec
from producers import positions
from producers.book import Book
from producers.positions import PositionHandler
from store.models import Position
from tests.producers.conftest import World, world_at
from tests.producers.fill_rounds import position_events, write_fills

D = Decimal
NEVER = lambda: False  # noqa: E731  # catch up until nothing is left


def row(id_: int, account: int, strategy: int, symbol: str, quantity: str, mark: str | None = None,
        realized: str = "0", unrealized: str = "0") -> Position:
    return Position(id=id_, account_id=account, strategy_id=strategy, user_id=1, symbol=symbol, quantity=D(quantity),
                    mark_price=None if mark is None else D(mark), realized_pnl=D(realized), unrealized_pnl=D(unrealized))


BOOK = [
    row(3, 1, 1, "BTC/USDT", "2", "100", "5", "-1.5"),
    row(1, 2, 1, "BTC/USDT", "-1", "90"),
    row(2, 3, 2, "BTC/USDT", "0", "90"),  # flat: never re-marked
    row(4, 1, 1, "ETH/USDT", "1", "10", "0.25", "2"),
    row(5, 1, 2, "ETH/USDT", "1", "10", "100", "100"),  # another strategy of account 1
    row(6, 2, 1, "BTC/USDT", "7"),  # a second row of (2, 1, BTC/USDT): the first one held wins
]


@pytest.mark.parametrize(("symbol", "price", "skip", "expected"), [
    ("BTC/USDT", "95", None, [1, 3]),  # open and not at the price, in id order
    ("BTC/USDT", "95", 1, [3]),  # the fill's own position is not re-marked
    ("BTC/USDT", "90", None, [3]),  # already at the price
    ("BTC/USDT", "100", 3, [1]),
    ("ETH/USDT", "10", None, []),
    ("SOL/USDT", "1", None, []),  # nothing held
])
def test_to_mark_is_every_open_position_of_the_symbol_whose_mark_moved(
    symbol: str, price: str, skip: int | None, expected: list[int]
) -> None:
    assert [p.id for p in Book(BOOK).to_mark(symbol, D(price), skip)] == expected


@pytest.mark.parametrize(("account", "strategy", "expected"), [
    (1, 1, "100005.75"),  # capital + (5 - 1.5) + (0.25 + 2): both symbols, not strategy 2's row
    (1, 2, "100200"),
    (2, 1, "100000"),
    (9, 9, "100000"),  # nothing held: the capital
])
def test_equity_sums_the_accounts_positions_in_that_strategy_exactly(account: int, strategy: int, expected: str) -> None:
    equity = Book(BOOK).equity(D(100_000), account, strategy)
    assert str(equity) == expected


def test_a_position_added_is_found_by_key_and_by_symbol() -> None:
    book = Book(BOOK)
    assert book.get(2, 1, "BTC/USDT") is BOOK[1] and book.get(1, 1, "SOL/USDT") is None
    new = row(7, 1, 1, "SOL/USDT", "3", "1")
    book.add(new)
    assert book.get(1, 1, "SOL/USDT") is new and book.to_mark("SOL/USDT", D(2), None) == [new]


def copy_world(world: World, folder: Path, demo: dict[str, Any]) -> World:
    world.engine.dispose()  # the WAL checkpointed into the file: it can be copied
    path = folder / "copy" / "tradestream.db"
    path.parent.mkdir()
    shutil.copyfile(Path(world.url.removeprefix("sqlite:///")), path)
    return world_at(path, demo)


def test_a_batch_writes_the_rows_and_events_of_one_fill_per_transaction(
    world: World, tmp_path: Path, demo_template: tuple[Path, dict[str, Any]]
) -> None:
    write_fills(world, 8)
    single = copy_world(world, tmp_path, demo_template[1])
    try:
        one_by_one = PositionHandler(single.sessions, lambda rows: None)
        batched = PositionHandler(world.sessions, lambda rows: None)
        commits: list[object] = []
        count = commits.append  # one bound method: listen and remove need the same object
        event.listen(world.engine, "commit", count)
        # Two rounds: the second's prices move the marks of the positions the first opened (position_marked).
        for shift in (0, 500):
            if shift:
                write_fills(world, 8, shift)
            fill_ids = write_fills(single, 8, shift) if shift else write_fills(single, 0)
            for fill_id in fill_ids[one_by_one.applied:]:  # each its wake-up: the fast path, one transaction a fill
                assert one_by_one.on_message([b"fill", codec.pack({"fill_id": fill_id})]) is False
            before = len(commits)
            batched.catch_up(NEVER)
            assert len(commits) - before == 2  # the batch, and the re-mark after it (which finds nothing to do)
        event.remove(world.engine, "commit", count)
        assert batched.applied == one_by_one.applied == 32
        assert position_events(world) == position_events(single)
        assert [e["event_type"] for e in position_events(world)].count("position_marked") > 0
        columns = (Position.id, Position.quantity, Position.entry_price, Position.realized_pnl, Position.mark_price,
                   Position.unrealized_pnl)
        with world.sessions() as a, single.sessions() as b:
            assert a.execute(select(*columns).order_by(Position.id)).all() == b.execute(select(*columns).order_by(Position.id)).all()
    finally:
        single.engine.dispose()


def test_fills_beyond_a_batch_are_applied_in_batches_in_id_order(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    fill_ids = write_fills(world, 10)
    monkeypatch.setattr(positions, "FILL_BATCH", 7)
    offered: list[list[int]] = []
    handler = PositionHandler(world.sessions, lambda rows: offered.append([r.id for r in rows]))
    handler.catch_up(NEVER)
    assert handler.applied == len(fill_ids) == 20
    fill_events = [e for e in position_events(world) if e["event_type"] != "position_marked"]
    assert len(fill_events) == 20
    assert len(offered) == 4 and all(offered[:3])  # three transactions of 7, 7 and 6 fills, then the re-mark
    ids = [i for batch in offered for i in batch]
    assert ids == sorted(ids)
