"""tradestream-positions: folds fills into Position rows and publishes position events.

    PULL --fills ─▶ FillCommand ─▶ apply_fill (pure) ─▶ Position row (commit)
        ─▶ position_update ─PUSH --ingress─▶ broker

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

from bus import endpoints, kinds
from bus.events import WireMessage
from bus.process import SettingsParser, configure_logging, setting, stop_on_signals
from bus.publisher import Publisher
from producers.commands import Command, FillCommand
from producers.errors import InvalidCommand
from producers.exchange import QUANTUM
from producers.pull_loop import LINGER_MS, CommandLoop
from store import rows
from store.db import DEFAULT_DATABASE_URL, make_session_factory, open_database, sqlalchemy_url
from store.errors import DatabaseUnavailable
from store.models import Account, Position, utc_now

log = logging.getLogger(__name__)


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
    """Applies fills to Position rows, then publishes their events."""

    def __init__(self, sessions: sessionmaker[Session], publish: Callable[[WireMessage], None]) -> None:
        self._sessions = sessions
        self._publish = publish

    def handle(self, command: Command) -> None:
        """Fold one fill into its position and publish the change."""
        if not isinstance(command, FillCommand):
            raise InvalidCommand(f"a {type(command).__name__} sent to the position handler")
        with self._sessions() as session:
            account = session.get(Account, command.account_id)
            if account is None:
                log.warning("fill of order %s ignored: account %d is gone", command.order_id, command.account_id)
                return
            position = self._position(session, command)
            before = Holding(position.quantity, position.entry_price, position.realized_pnl)
            after = apply_fill(before, command.side, command.quantity, command.price)
            if before.is_flat and after.is_flat:
                return
            position.quantity, position.entry_price = after.quantity, after.entry_price
            position.realized_pnl, position.updated_at = after.realized_pnl, utc_now()
            session.commit()
            event = rows.position_event(position, account, position_event_type(before, after), before.quantity)
        self._publish(event)

    def _position(self, session: Session, fill: FillCommand) -> Position:
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
    ingress: str = setting(endpoints.INGRESS, kind=kinds.zmq_endpoint, help="broker endpoint events are pushed to")
    fills: str = setting(endpoints.FILLS, kind=kinds.zmq_endpoint, help="PULL endpoint for fills (bound)")


def parse_config(argv: list[str] | None) -> tuple[PositionsConfig, str]:
    """Read flags and TRADESTREAM_* variables."""
    parser = SettingsParser(
        PositionsConfig,
        prog="tradestream-positions",
        description="Position handler: folds fills into positions and publishes their events.",
    )
    return parser.parse(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tradestream-positions`."""
    config, log_level = parse_config(argv)
    configure_logging("positions", log_level)
    try:
        engine = open_database(config.database_url)
    except DatabaseUnavailable as exc:
        log.error("%s", exc)
        return 1
    events = Publisher(config.ingress, linger_ms=LINGER_MS)
    handler = PositionHandler(make_session_factory(engine), events.publish)
    try:
        loop = CommandLoop(config.fills, handler.handle)
    except Exception as exc:  # a taken port: say so in one line
        log.error("cannot start: %s", exc)
        return 1
    stop_on_signals(loop.stop)
    log.info("positions listening on %s", loop.endpoint)
    loop.run()
    events.close()
    log.info("positions stopped: %d fills handled, %d skipped", loop.handled, loop.skipped)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
