"""tradestream-orders: applies signals and ticks to the paper exchange.

    PULL --orders ─▶ SignalCommand / TickCommand ─▶ PaperExchange ─▶ Order rows (commit)
        ─▶ order_update / order_batch_update events ─PUSH--ingress─▶ broker
        ─▶ FillCommand ─PUSH --fills─▶ positions

A signal is applied to every account linked to its strategy, in list order for
a batch; each order is sized as `qty_per` percent of the account's capital at
the order's price (MARKET: the signal's price, else the last tick, else the
last fill in the database; none of them: REJECTED). Events are built as each
change happens (an order created and cancelled by the same batch yields both),
and published only after the database commit, so a reader of the REST snapshot
never sees an event ahead of its row. See pull_loop.py for delivery guarantees.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bus import endpoints, kinds
from bus.events import WireMessage, utc_now
from bus.process import SettingsParser, configure_logging, setting, stop_on_signals
from bus.publisher import Publisher
from bus.topics import StreamKey
from producers import commands
from producers.commands import Command, FillCommand, SignalCommand, TickCommand
from producers.emission import BatchTally, emit_order_events_smart
from producers.errors import InvalidCommand
from producers.exchange import RESTING, OrderChange, PaperExchange, PaperOrder
from producers.prices import last_fill_price
from producers.pull_loop import LINGER_MS, CommandLoop
from producers.signals import CANCEL_ALL, OrderSpec
from store import access, rows
from store.db import DEFAULT_DATABASE_URL, make_session_factory, open_database, sqlalchemy_url
from store.errors import DatabaseUnavailable
from store.models import Account, Order, Strategy
from store.models import utc_now as utc_moment

log = logging.getLogger(__name__)

QUANTITY_DECIMALS = 8
_PAPER_FIELDS = ("order_id", "strategy_id", "account_id", "symbol", "side", "order_type",
                 "quantity", "price", "stop_price", "status", "filled_quantity", "average_price")


@dataclass(frozen=True, slots=True)
class OrdersConfig:
    """Settings of the order handler."""

    database_url: str = setting(DEFAULT_DATABASE_URL, kind=sqlalchemy_url, help="SQLAlchemy database URL")
    ingress: str = setting(endpoints.INGRESS, kind=kinds.zmq_endpoint, help="broker PULL endpoint events are pushed to")
    orders: str = setting(endpoints.ORDERS, kind=kinds.zmq_endpoint, help="PULL endpoint for signal and tick commands (bound)")
    fills: str = setting(endpoints.FILLS, kind=kinds.zmq_endpoint, help="position handler endpoint fills are pushed to")


@dataclass(slots=True)
class Outbox:
    """What one command produced, sent once the database has it."""

    events: list[WireMessage] = field(default_factory=list)
    fills: list[FillCommand] = field(default_factory=list)


def order_quantity(capital: float, qty_per: float, price: float | None) -> float | None:
    """`qty_per` percent of `capital` at `price`, rounded; None when it cannot be a quantity."""
    if price is None:
        return None
    quantity = round(capital * qty_per / 100.0 / price, QUANTITY_DECIMALS)
    return quantity if math.isfinite(quantity) and quantity > 0 else None


def new_order_id() -> str:
    """A paper exchange order id, unique across restarts."""
    return "paper-" + uuid.uuid4().hex


def paper_order(row: Order) -> PaperOrder:
    """The exchange's view of an Order row."""
    return PaperOrder(**{name: getattr(row, name) for name in _PAPER_FIELDS})


class OrderHandler:
    """Applies commands to the exchange and the database, then publishes what changed."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        publish: Callable[[WireMessage], None],
        push_fill: Callable[[FillCommand], None],
    ) -> None:
        self._sessions = sessions
        self._publish = publish
        self._push_fill = push_fill
        self.exchange = PaperExchange()

    def restore(self) -> int:
        """Load the resting orders from the database into a fresh exchange; how many."""
        exchange = PaperExchange()
        exchange.last_prices = self.exchange.last_prices
        with self._sessions() as session:
            query = select(Order).where(Order.status.in_(RESTING)).order_by(Order.id)
            for row in session.scalars(query):
                exchange.restore(paper_order(row))
        self.exchange = exchange
        return len(exchange.open_orders())

    def handle(self, command: Command) -> None:
        """Apply one command; on failure the exchange is rebuilt from the database, then it raises."""
        try:
            if isinstance(command, SignalCommand):
                self.on_signal(command)
            elif isinstance(command, TickCommand):
                self.on_tick(command)
            else:
                raise InvalidCommand("a fill sent to the order handler")
        except Exception:
            self.restore()  # the exchange may hold changes the rolled-back transaction lost
            raise

    def on_signal(self, command: SignalCommand) -> None:
        outbox, tally = Outbox(), BatchTally() if command.is_batch else None
        with self._sessions() as session:
            strategy = self._strategy(session, command)
            if strategy is None:
                return
            accounts = access.linked_accounts(session, strategy.id)
            for spec in command.orders:
                if spec.order_type == CANCEL_ALL:
                    self._cancel_all(session, strategy.id, spec.symbol, outbox, tally)
                    continue
                for account in accounts:
                    self._place(session, strategy.id, command.signal_id, spec, account, outbox, tally)
            session.commit()
        if tally is not None:
            outbox.events.extend(tally.events(utc_now()))
        self._send(outbox)

    def on_tick(self, command: TickCommand) -> None:
        changes = self.exchange.tick(command.symbol, command.price, command.volume)
        if not changes:
            return
        outbox = Outbox()
        with self._sessions() as session:
            by_id = _rows_by_order_id(session, (change.order.order_id for change in changes))
            for change in changes:
                self._record(session, change, by_id[change.order.order_id], outbox, suppress_toast=False)
            session.commit()
        self._send(outbox)

    def _strategy(self, session: Session, command: SignalCommand) -> Strategy | None:
        if command.strategy_id is not None:
            strategy = session.get(Strategy, command.strategy_id)
        else:
            query = select(Strategy).where(Strategy.group_name == command.group_name)
            strategy = session.scalars(query).one_or_none()
        if strategy is None or not strategy.is_active:
            log.warning("signal for %s strategy %r ignored", "inactive" if strategy else "unknown", command.group_name)
            return None
        return strategy

    def _place(
        self, session: Session, strategy_id: int, signal_id: int | None, spec: OrderSpec,
        account: Account, outbox: Outbox, tally: BatchTally | None,
    ) -> None:
        market = self._market_price(session, spec) if spec.order_type == "MARKET" else None
        quantity = order_quantity(account.capital, spec.qty_per or 0.0, spec.sizing_price or market)
        order = PaperOrder(
            new_order_id(), strategy_id, account.id, spec.symbol, spec.side or "BUY",
            spec.order_type, quantity or 0.0, spec.price, spec.stop_price,
        )
        if quantity is None:
            order.status = "REJECTED"
            log.warning("order %s rejected: no price known for %s or size not positive", order.order_id, spec.symbol)
            change = OrderChange(order, None)
        else:
            change = self.exchange.place(order, market)
        row = Order(order_id=order.order_id, signal_id=signal_id, user_id=account.user_id)
        session.add(row)
        self._record(session, change, row, outbox, suppress_toast=tally is not None)
        if tally is not None and order.status != "REJECTED":
            tally.created(StreamKey(account.user_id, strategy_id), order.order_type)

    def _market_price(self, session: Session, spec: OrderSpec) -> float | None:
        if spec.price is not None:
            return spec.price
        return self.exchange.last_prices.get(spec.symbol) or last_fill_price(session, spec.symbol)

    def _cancel_all(
        self, session: Session, strategy_id: int, symbol: str, outbox: Outbox, tally: BatchTally | None
    ) -> None:
        changes = self.exchange.cancel_all(strategy_id, symbol)
        by_id = _rows_by_order_id(session, (change.order.order_id for change in changes))
        for change in changes:
            row = by_id[change.order.order_id]
            self._record(session, change, row, outbox, suppress_toast=tally is not None)
            if tally is not None:
                tally.cancelled(StreamKey(row.user_id, strategy_id), row.order_type)

    def _record(
        self, session: Session, change: OrderChange, row: Order, outbox: Outbox, *, suppress_toast: bool
    ) -> None:
        """Copy the change into its row and build its events now, while they describe this change."""
        for name in _PAPER_FIELDS:
            setattr(row, name, getattr(change.order, name))
        row.updated_at = utc_moment()
        account = session.get(Account, row.account_id)
        if account is None:
            raise LookupError(f"account {row.account_id} of order {row.order_id} is gone")
        for emission in emit_order_events_smart(change):
            event = rows.order_event(
                row, account, emission.event_type, suppress_toast=suppress_toast, quantity=emission.quantity
            )
            outbox.events.append(event)
        if change.fill is not None:
            outbox.fills.append(FillCommand(
                row.order_id, row.account_id, row.strategy_id, row.user_id, row.symbol,
                row.side, change.fill.quantity, change.fill.price,
            ))

    def _send(self, outbox: Outbox) -> None:
        for event in outbox.events:
            self._publish(event)
        for fill in outbox.fills:
            self._push_fill(fill)


def _rows_by_order_id(session: Session, order_ids: Iterable[str]) -> dict[str, Order]:
    wanted = list(order_ids)
    if not wanted:
        return {}
    return {row.order_id: row for row in session.scalars(select(Order).where(Order.order_id.in_(wanted)))}


def parse_config(argv: list[str] | None) -> tuple[OrdersConfig, str]:
    """Read flags and TRADESTREAM_* variables."""
    parser = SettingsParser(
        OrdersConfig,
        prog="tradestream-orders",
        description="Order handler: applies webhook signals and price ticks to a paper exchange, "
        "stores the orders and publishes their events.",
    )
    return parser.parse(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tradestream-orders`."""
    config, log_level = parse_config(argv)
    configure_logging("orders", log_level)
    try:
        engine = open_database(config.database_url)
    except DatabaseUnavailable as exc:
        log.error("%s", exc)
        return 1
    events = Publisher(config.ingress, linger_ms=LINGER_MS)
    fills = Publisher(config.fills, linger_ms=LINGER_MS)
    handler = OrderHandler(
        make_session_factory(engine),
        events.publish,
        lambda fill: fills.send_map(commands.FILL, fill.to_wire()),
    )
    try:
        resting = handler.restore()
        loop = CommandLoop(config.orders, handler.handle)
    except Exception as exc:  # a missing table or a taken port: say so in one line
        log.error("cannot start: %s", exc)
        return 1
    stop_on_signals(loop.stop)
    log.info("orders listening on %s, %d resting orders restored", loop.endpoint, resting)
    loop.run()
    events.close()
    fills.close()
    log.info("orders stopped: %d commands handled, %d skipped", loop.handled, loop.skipped)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
