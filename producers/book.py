"""The positions one transaction of the position handler holds, indexed three ways. No database I/O.

    Book(rows) ─▶ get(account, strategy, symbol)   the fill's own position (add() a new one)
              ─▶ to_mark(symbol, price, skip)       the open positions a new mark moves, in id order
              ─▶ equity(capital, account, strategy) store/ledger.py's sum over what the book holds

A batch of fills (producers/positions.py) loads every position it may touch once:
those of the batch's symbols (a fill re-marks them all) and every position of
their accounts (an event's equity sums the account's positions in its strategy).
The book then answers from memory what each fill would otherwise ask the database,
and sees every change the transaction made before it (the rows are the same
objects the session writes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from store.ledger import equity_of
from store.models import Position


class Book:
    """Positions by (account, strategy, symbol), by symbol and by (account, strategy); each row once."""

    def __init__(self, positions: Iterable[Position] = ()) -> None:
        self._by_key: dict[tuple[int, int, str], Position] = {}
        self._by_symbol: dict[str, list[Position]] = defaultdict(list)
        self._by_holder: dict[tuple[int, int], list[Position]] = defaultdict(list)
        for position in positions:
            self.add(position)

    def add(self, position: Position) -> None:
        """Hold `position` (a second row of a key already held is ignored: the session has one object per row)."""
        key = (position.account_id, position.strategy_id, position.symbol)
        if key in self._by_key:
            return
        self._by_key[key] = position
        self._by_symbol[position.symbol].append(position)
        self._by_holder[(position.account_id, position.strategy_id)].append(position)

    def get(self, account_id: int, strategy_id: int, symbol: str) -> Position | None:
        """The position of that key, if the book holds it."""
        return self._by_key.get((account_id, strategy_id, symbol))

    def to_mark(self, symbol: str, price: Decimal, skip: int | None) -> list[Position]:
        """The open positions of `symbol` (but `skip`) whose mark is not `price`, in id order."""
        moved = [p for p in self._by_symbol.get(symbol, ())
                 if p.id != skip and not p.quantity.is_zero() and p.mark_price != price]
        return sorted(moved, key=lambda p: p.id)

    def equity(self, capital: Decimal, account_id: int, strategy_id: int) -> Decimal:
        """The account's equity in the strategy from the positions held (store/ledger.py)."""
        held = self._by_holder.get((account_id, strategy_id), ())
        return equity_of(capital, ((p.realized_pnl, p.unrealized_pnl) for p in held))
