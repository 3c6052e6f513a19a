"""tradestream-positions: folds fills (execution rows) into Position rows and sends position events.

    executions rows ─▶ apply_fill (pure), fill by fill ─▶ Position rows · outbox events · fills applied ─▶ ONE commit
        ─▶ relay ─▶ broker (acknowledged ingress)          PULL --fills [fill, id]: a wake-up, a fast path

Fills are applied in id order, each exactly once (fills.py): at start, whenever
a wake-up shows a gap (its id is not the next one) and every sweep, the handler
reads the pending fills from the database and applies them FILL_BATCH to a
transaction (claimed together, their positions, accounts and prices read once by
fill_batch.py, each fill folded in order against that book: bench/positions.py,
5.7 → 0.29 ms of CPU and 10 → 1.1 statements a fill); a wake-up for the very
next fill is applied at once, alone. A batch that raises is applied again fill by
fill, so a fill whose application raises is recorded and skipped, the others applied.

A position is one row per (account, strategy, symbol) with a signed quantity,
the average entry price of what is open and its P&L (ledger.py: average cost,
exact Decimals). Events: position_created when it opens from flat,
position_closed when it returns to flat, position_updated otherwise (each with
previous_quantity), and position_marked when only the mark moved.

Marks: a position's `mark_price` is its symbol's last known price
(prices.last_known_price: the last tick, else the last fill) and
`unrealized_pnl` is taken at it. A fill marks its own position and re-marks
the symbol's other open positions in its transaction; ticks reach the order
handler, which commits the new price and wakes this one (any wake-up): each
catch-up re-marks the open positions of every symbol whose price differs from
the one it last applied (all of them after a start), each position_marked event
in the transaction of its row's change. So a mark is as durable and idempotent
as a fill: state compared with state, applied once. Same loop and delivery
guarantees as the order handler (pull_loop.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bus import endpoints, kinds
from bus.process import (
    SettingsParser,
    configure_logging,
    exit_on_stop_signals_while_starting,
    metrics_port_setting,
    setting,
    stop_on_signals,
)
from bus.security import bus_keys_setting
from producers import commands, fill_batch, fills
from producers.book import Book
from producers.errors import RETRIED, InvalidCommand
from producers.ledger import Holding, apply_fill, position_event_type, unrealized_pnl
from producers.metrics import PositionsMetrics
from producers.metrics_port import serve
from producers.outbox import Written
from producers.prices import last_known_price
from producers.pull_loop import ProducerLoop, drain_rows
from producers.relay import Relay
from producers.relay_window import Row
from producers.startup import open_store
from store import rows
from store.columns import utc_now
from store.db import DEFAULT_DATABASE_URL, sqlalchemy_url
from store.handoff import Execution
from store.models import Account, MarketPrice, Position
from store.money import steps_of

log = logging.getLogger(__name__)

SOURCE = "positions"
FILL_BATCH = 100
MARKED = "position_marked"


def never() -> bool:
    """The fast path's `stopping`: one fill is applied whole."""
    return False


class PositionHandler:
    """Applies executions to Position rows, each once, in id order; hands on the events each commit wrote."""

    def __init__(
        self, sessions: sessionmaker[Session], committed: Callable[[list[Row]], None],
        metrics: PositionsMetrics | None = None,
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._committed = committed
        self.applied = 0
        self.failed = 0
        # The price each symbol's open positions were last marked at by this process; empty at start,
        # so the first catch-up re-marks every symbol.
        self._marked: dict[str, Decimal] | None = None
        self.marks = 0
        with sessions() as session:
            self._cursor = fills.last_applied(session)  # every fill up to here is applied (single writer)

    def on_message(self, frames: list[bytes]) -> bool:
        """A fill wake-up: the next fill is applied at once (the fast path); a gap means reading the table."""
        try:
            fill_id = commands.parse_fill_wake(frames)
        except InvalidCommand:
            return True  # whatever it was, it woke us
        if fill_id is None or fill_id > self._cursor + 1:
            return True
        if fill_id == self._cursor + 1:
            self._apply([fill_id], never)
        return False  # an older id: applied already

    def catch_up(self, stopping: Callable[[], bool]) -> None:
        """Apply every pending fill in id order, FILL_BATCH a transaction, until none is left or `stopping()`;
        then re-mark."""
        while not stopping():
            batch = self._pending()
            if batch:
                self._apply(batch, stopping)
            if len(batch) < FILL_BATCH:  # fewer: none is left (later ones come with their own wake-up)
                break
        if not stopping():
            self.remark()

    def remark(self) -> None:
        """Re-mark the open positions of every symbol whose last known price moved, in one transaction."""
        written = Written(SOURCE)
        with self._sessions() as session:
            if self._marked is None:
                symbols = set(session.scalars(select(Position.symbol).distinct()))
            else:
                prices = session.execute(select(MarketPrice.symbol, MarketPrice.price)).all()
                symbols = {symbol for symbol, price in prices if self._marked.get(symbol) != price}
            marked = {}
            for symbol in sorted(symbols):
                price = last_known_price(session, symbol)
                if price is not None:
                    self._mark_symbol_rows(session, symbol, price, written)
                    marked[symbol] = price
            session.commit()
        self._marked = {**(self._marked or {}), **marked}
        self._committed(written.rows())

    def _pending(self) -> list[int]:
        with self._sessions() as session:
            return fills.pending(session, FILL_BATCH)

    def _apply(self, fill_ids: list[int], stopping: Callable[[], bool]) -> None:
        """Apply these fills in one transaction; when that raises (a poison fill), one transaction each.

        The fall-back is what isolates the fill at fault: it is recorded failed, the others are applied.
        A TRANSIENT error (the database) propagates, the fills left pending (pull_loop.drain_rows).
        """
        if len(fill_ids) > 1:
            try:
                if self._commit(fill_ids):
                    return
            except RETRIED:
                raise
            except Exception:
                log.debug("a batch of %d fills raised: applying them one by one", len(fill_ids), exc_info=True)
        drain_rows(lambda: fill_ids, self._apply_one, self._fail, stopping, limit=len(fill_ids) + 1)

    def _apply_one(self, fill_id: int) -> None:
        self._commit([fill_id])
        self._cursor = max(self._cursor, fill_id)

    def _commit(self, fill_ids: list[int]) -> bool:
        """Claim, fold and commit the fills; False (nothing done) when one of them is applied already."""
        written = Written(SOURCE)
        with self._sessions() as session:
            executions = fills.claim_batch(session, fill_ids)
            if executions is None:
                return False
            loaded = fill_batch.load(session, executions)
            marks = [(e.symbol, self._fold(session, e, written, loaded)) for e in executions]
            session.commit()
        # Only what is committed is remembered: a lost commit leaves the fills pending, their marks unknown.
        for symbol, mark in marks:
            if mark is not None and self._marked is not None:
                self._marked[symbol] = mark
        self.applied += len(executions)
        if self._metrics is not None:
            for execution in executions:
                self._metrics.fill_applied(execution.executed_at)
        self._cursor = max(self._cursor, *fill_ids)
        self._committed(written.rows())
        return True

    def _fail(self, fill_id: int, exc: Exception) -> None:
        self.failed += 1
        if self._metrics is not None:
            self._metrics.failed.inc()
        log.error("fill %d failed, recorded and skipped: %s", fill_id, exc, exc_info=exc)
        fills.fail(self._sessions, fill_id, f"{type(exc).__name__}: {exc}")
        self._cursor = max(self._cursor, fill_id)  # once recorded: while it is pending, no later fill goes first

    def _fold(self, session: Session, fill: Execution, written: Written, loaded: fill_batch.Loaded) -> Decimal | None:
        """Apply the fill to its position and mark the symbol's positions; the mark price, None if nothing moved."""
        account = loaded.accounts[fill.account_id]
        position = loaded.book.get(fill.account_id, fill.strategy_id, fill.symbol)
        assert position is not None  # fill_batch.load opened every fill's position
        steps = steps_of(fill.symbol)
        before = Holding(position.quantity, position.entry_price, position.realized_pnl)
        after = apply_fill(before, fill.side, fill.quantity, fill.price, steps)
        if before.is_flat and after.is_flat:
            return None
        mark = loaded.marks[fill.symbol] or fill.price  # the fill's order row is committed already
        position.quantity, position.entry_price = after.quantity, after.entry_price
        position.realized_pnl, position.updated_at = after.realized_pnl, utc_now()
        position.mark_price, position.unrealized_pnl = mark, unrealized_pnl(after, mark, steps)
        event_type = position_event_type(before, after)
        equity = loaded.book.equity(account.capital, account.id, position.strategy_id)
        written.add(session, rows.position_event(position, account, event_type, before.quantity, equity))
        for other in loaded.book.to_mark(fill.symbol, mark, skip=position.id):
            self._mark(session, other, loaded.accounts.get(other.account_id), mark, written, loaded.book)
        return mark

    def _mark_symbol_rows(self, session: Session, symbol: str, price: Decimal, written: Written) -> None:
        """Mark the symbol's open positions at `price` (a re-mark): read from the database, as remark's own book."""
        holders = select(Position.account_id).where(Position.symbol == symbol)
        book = Book(session.scalars(select(Position).where(Position.account_id.in_(holders))))
        accounts = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(holders)))}
        for position in book.to_mark(symbol, price, skip=None):
            self._mark(session, position, accounts.get(position.account_id), price, written, book)

    def _mark(
        self, session: Session, position: Position, account: Account | None, price: Decimal, written: Written,
        book: Book,
    ) -> None:
        """Mark one open position at `price`: its position_marked event."""
        holding = Holding(position.quantity, position.entry_price, position.realized_pnl)
        position.mark_price, position.unrealized_pnl = price, unrealized_pnl(holding, price, steps_of(position.symbol))
        position.updated_at = utc_now()
        if account is None:
            return  # deleted meanwhile: its positions go with it
        equity = book.equity(account.capital, account.id, position.strategy_id)
        written.add(session, rows.position_event(position, account, MARKED, position.quantity, equity))
        self.marks += 1


@dataclass(frozen=True, slots=True)
class PositionsConfig:
    """Settings of the position handler."""

    database_url: str = setting(DEFAULT_DATABASE_URL, kind=sqlalchemy_url, help="SQLAlchemy database URL")
    ack_ingress: str = setting(
        endpoints.ACK_INGRESS, kind=kinds.zmq_endpoint, help="broker endpoint the outbox relay sends events to"
    )
    fills: str = setting(endpoints.FILLS, kind=kinds.zmq_endpoint, help="PULL endpoint woken for new fills (bound)")
    bus_keys: str = bus_keys_setting()
    metrics_port: int | None = metrics_port_setting()


def parse_config(argv: list[str] | None) -> tuple[PositionsConfig, str]:
    """Read flags and TRADESTREAM_* variables."""
    parser = SettingsParser(
        PositionsConfig,
        prog="tradestream-positions",
        description="Position handler: folds fills into positions and sends their events to the broker.",
    )
    return parser.parse(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tradestream-positions`."""
    config, log_level = parse_config(argv)
    configure_logging("positions", log_level)
    exit_on_stop_signals_while_starting()
    store = open_store(config.bus_keys, config.database_url, SOURCE, binds=(config.fills,), connects=(config.ack_ingress,))
    if store is None:
        return 1
    sessions, writer = store.sessions, store.writer
    try:
        relay = Relay(sessions, SOURCE, config.ack_ingress)
        metrics = PositionsMetrics(relay.window)
        handler = PositionHandler(sessions, relay.offer, metrics)
        loop = ProducerLoop(config.fills, handler, relay, writer=writer)
        metrics_at = "off" if config.metrics_port is None else str(serve(metrics.registry, config.metrics_port))
    except Exception as exc:  # a taken port: say so in one line
        log.error("cannot start: %s", exc)
        return 1
    stop_on_signals(loop.stop)
    log.info("positions listening on %s, relaying %s to %s, metrics port %s",
             loop.endpoint, relay.stream, config.ack_ingress, metrics_at)
    loop.run()
    log.info("positions stopped: %d fills applied, %d failed, %d re-marks; relay %s",
             handler.applied, handler.failed, handler.marks, relay.window.stats)
    writer.close()
    return 1 if loop.writer_lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
