"""tradestream-positions: folds fills (execution rows) into Position rows and sends position events.

    executions row ─▶ apply_fill (pure) ─▶ Position row · outbox event · fill applied ─▶ ONE commit
        ─▶ relay ─▶ broker (acknowledged ingress)          PULL --fills [fill, id]: a wake-up, a fast path

Fills are applied in id order, each exactly once (fills.py): at start, whenever
a wake-up shows a gap (its id is not the next one) and every sweep, the handler
reads the pending fills from the database; a wake-up for the very next fill is
applied at once. A fill whose application raises is recorded and skipped.

A position is one row per (account, strategy, symbol) with a signed quantity
(BUY adds, SELL subtracts), the weighted average entry price of what is open
and the PnL realised by reducing it. A fill larger than the position flips it:
the rest opens the other side at the fill's price. Events: position_created
when it opens from flat, position_closed when it returns to flat,
position_updated otherwise (each with previous_quantity). Same loop and
delivery guarantees as the order handler (pull_loop.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bus import endpoints, kinds, security
from bus.process import SettingsParser, configure_logging, metrics_port_setting, setting, stop_on_signals
from bus.security import bus_keys_setting
from producers import commands, fills
from producers.errors import InvalidCommand
from producers.exchange import QUANTUM
from producers.metrics import PositionsMetrics, serve
from producers.outbox import Written
from producers.pull_loop import ProducerLoop, drain_rows
from producers.relay import Relay
from producers.relay_window import Row
from store import rows
from store.db import DEFAULT_DATABASE_URL, make_session_factory, open_database, sqlalchemy_url
from store.errors import DatabaseUnavailable
from store.models import Account, Execution, Position, utc_now

log = logging.getLogger(__name__)

SOURCE = "positions"
FILL_BATCH = 100


@dataclass(frozen=True, slots=True)
class Holding:
    """A position's state: signed quantity, entry price (None when flat), realised PnL."""

    quantity: float = 0.0
    entry_price: float | None = None
    realized_pnl: float = 0.0

    @property
    def is_flat(self) -> bool:
        return abs(self.quantity) <= QUANTUM


def apply_fill(holding: Holding, side: str, quantity: float, price: float) -> Holding:
    """The holding after buying or selling `quantity` at `price`."""
    signed = quantity if side == "BUY" else -quantity
    if holding.is_flat or (holding.quantity > 0) == (signed > 0):
        return _add(holding, signed, price)
    entry = holding.entry_price if holding.entry_price is not None else price
    closed = min(abs(holding.quantity), quantity)
    direction = 1.0 if holding.quantity > 0 else -1.0
    realized = holding.realized_pnl + closed * (price - entry) * direction
    remaining = holding.quantity + signed
    if abs(remaining) <= QUANTUM:
        return Holding(0.0, None, realized)
    if (remaining > 0) != (holding.quantity > 0):
        return Holding(remaining, price, realized)  # flipped: the rest opened at this price
    return Holding(remaining, entry, realized)


def _add(holding: Holding, signed: float, price: float) -> Holding:
    """Open or increase: the entry price becomes the weighted average."""
    held = 0.0 if holding.is_flat else holding.quantity
    total = held + signed
    entry = holding.entry_price if holding.entry_price is not None and held else price
    average = (abs(held) * entry + abs(signed) * price) / abs(total)
    return Holding(total, average, holding.realized_pnl)


def position_event_type(before: Holding, after: Holding) -> str:
    """position_created from flat, position_closed to flat, position_updated otherwise."""
    if before.is_flat:
        return "position_created"
    return "position_closed" if after.is_flat else "position_updated"


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
            drain_rows(lambda: [fill_id], self._apply, self._fail, lambda: False, limit=2)
        return False  # an older id: applied already

    def catch_up(self, stopping: Callable[[], bool]) -> None:
        """Apply every pending fill in id order, until none is left or `stopping()`."""
        drain_rows(self._pending, self._apply, self._fail, stopping, limit=FILL_BATCH)

    def _pending(self) -> list[int]:
        with self._sessions() as session:
            return fills.pending(session, FILL_BATCH)

    def _apply(self, fill_id: int) -> None:
        written = Written(SOURCE)
        with self._sessions() as session:
            execution = fills.claim(session, fill_id)
            if execution is not None:
                executed_at = execution.executed_at
                self._fold(session, execution, written)
                session.commit()
                self.applied += 1
                if self._metrics is not None:
                    self._metrics.fill_applied(executed_at)
        self._cursor = max(self._cursor, fill_id)
        self._committed(written.rows())

    def _fail(self, fill_id: int, exc: Exception) -> None:
        self.failed += 1
        if self._metrics is not None:
            self._metrics.failed.inc()
        self._cursor = max(self._cursor, fill_id)
        log.error("fill %d failed, recorded and skipped: %s", fill_id, exc, exc_info=exc)
        fills.fail(self._sessions, fill_id, f"{type(exc).__name__}: {exc}")

    def _fold(self, session: Session, fill: Execution, written: Written) -> None:
        account = session.get(Account, fill.account_id)
        if account is None:
            raise LookupError(f"account {fill.account_id} of fill {fill.id} is gone")
        position = self._position(session, fill)
        before = Holding(position.quantity, position.entry_price, position.realized_pnl)
        after = apply_fill(before, fill.side, fill.quantity, fill.price)
        if before.is_flat and after.is_flat:
            return
        position.quantity, position.entry_price = after.quantity, after.entry_price
        position.realized_pnl, position.updated_at = after.realized_pnl, utc_now()
        session.flush()  # a new position's id is in its event
        written.add(session, rows.position_event(position, account, position_event_type(before, after), before.quantity))

    def _position(self, session: Session, fill: Execution) -> Position:
        query = select(Position).where(
            Position.account_id == fill.account_id,
            Position.strategy_id == fill.strategy_id,
            Position.symbol == fill.symbol,
        )
        position = session.scalars(query).one_or_none()
        if position is None:
            position = Position(
                account_id=fill.account_id, strategy_id=fill.strategy_id, user_id=fill.user_id,
                symbol=fill.symbol, quantity=0.0, entry_price=None, realized_pnl=0.0,
            )
            session.add(position)
        return position


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
    if not security.start(config.bus_keys, binds=(config.fills,), connects=(config.ack_ingress,)):
        return 1
    try:
        engine = open_database(config.database_url)
    except DatabaseUnavailable as exc:
        log.error("%s", exc)
        return 1
    sessions = make_session_factory(engine)
    try:
        relay = Relay(sessions, SOURCE, config.ack_ingress)
        metrics = PositionsMetrics(relay.window)
        handler = PositionHandler(sessions, relay.offer, metrics)
        loop = ProducerLoop(config.fills, handler, relay)
        metrics_at = "off" if config.metrics_port is None else str(serve(metrics.registry, config.metrics_port))
    except Exception as exc:  # a taken port: say so in one line
        log.error("cannot start: %s", exc)
        return 1
    stop_on_signals(loop.stop)
    log.info("positions listening on %s, relaying %s to %s, metrics port %s",
             loop.endpoint, relay.stream, config.ack_ingress, metrics_at)
    loop.run()
    log.info("positions stopped: %d fills applied, %d failed; relay %s", handler.applied, handler.failed, relay.window.stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
