"""tradestream-orders: applies the inbox's signals and ticks to the paper exchange.

    order_inbox row ─▶ SignalCommand / TickCommand ─▶ PaperExchange
        ─▶ Order rows · Execution rows · outbox events · inbox row handled ─▶ ONE commit
        ─▶ relay ─▶ broker (acknowledged ingress)       ─▶ PUSH [fill, id] --fills ─▶ positions (a wake-up)

The inbox is read at start, on every wake-up on --orders and every sweep
(pull_loop.py), oldest row first; each row is claimed, applied and marked in one
transaction, so a signal the webhook stored is handled exactly once whichever
process dies. A row that raises is recorded `failed` with its error and skipped.

A signal is applied to every account linked to its strategy, in list order for
a batch; each order is sized as `qty_per` percent of the account's capital at
the order's price (MARKET: the signal's price, else the last tick, else the
last fill in the database; none of them: REJECTED). Events are built as each
change happens (an order created and cancelled by the same batch yields both)
and written to the outbox in the same transaction, so none is lost and a
reader of the REST snapshot never sees an event ahead of its row. The
exchange's state (resting orders, last tick per symbol) is in the database too:
a restarted handler restores it.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bus import endpoints, kinds
from bus.errors import BusUnavailable
from bus.events import utc_now
from bus.process import SettingsParser, configure_logging, setting, stop_on_signals
from bus.publisher import Publisher
from bus.topics import StreamKey
from producers import commands, inbox
from producers.commands import Command, SignalCommand
from producers.emission import BatchTally, emit_order_events_smart
from producers.exchange import RESTING, OrderChange, PaperExchange, PaperOrder
from producers.outbox import Written
from producers.prices import last_fill_price
from producers.pull_loop import LINGER_MS, ProducerLoop, drain_rows
from producers.relay import Relay
from producers.relay_window import Row
from producers.signals import CANCEL_ALL, OrderSpec
from store import access, rows
from store.db import DEFAULT_DATABASE_URL, make_session_factory, open_database, sqlalchemy_url
from store.errors import DatabaseUnavailable
from store.models import OUTCOME_DONE, OUTCOME_REJECTED, Account, Execution, MarketPrice, Order, Strategy
from store.models import utc_now as utc_moment

log = logging.getLogger(__name__)

SOURCE = "orders"
QUANTITY_DECIMALS = 8
INBOX_BATCH = 100
PRUNE_S = 60.0
_PAPER_FIELDS = ("order_id", "strategy_id", "account_id", "symbol", "side", "order_type",
                 "quantity", "price", "stop_price", "status", "filled_quantity", "average_price")


@dataclass(frozen=True, slots=True)
class OrdersConfig:
    """Settings of the order handler."""

    database_url: str = setting(DEFAULT_DATABASE_URL, kind=sqlalchemy_url, help="SQLAlchemy database URL")
    ack_ingress: str = setting(
        endpoints.ACK_INGRESS, kind=kinds.zmq_endpoint, help="broker endpoint the outbox relay sends events to"
    )
    orders: str = setting(
        endpoints.ORDERS, kind=kinds.zmq_endpoint, help="PULL endpoint woken when the inbox has new rows (bound)"
    )
    fills: str = setting(endpoints.FILLS, kind=kinds.zmq_endpoint, help="position handler endpoint woken for new fills")


@dataclass(slots=True)
class Work:
    """What one command's transaction writes besides its orders: events and fills, known after the commit."""

    events: Written
    fills: list[Execution]


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
    """Applies inbox commands to the exchange and the database; hands on what each commit wrote."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        committed: Callable[[list[Row]], None],
        wake_fills: Callable[[list[int]], None],
    ) -> None:
        self._sessions = sessions
        self._committed = committed
        self._wake_fills = wake_fills
        self.exchange = PaperExchange()
        self.handled = 0
        self.failed = 0
        self._next_prune = time.monotonic() + PRUNE_S

    def restore(self) -> int:
        """Load the resting orders and last prices from the database into a fresh exchange; how many orders."""
        exchange = PaperExchange()
        with self._sessions() as session:
            query = select(Order).where(Order.status.in_(RESTING)).order_by(Order.id)
            for row in session.scalars(query):
                exchange.restore(paper_order(row))
            exchange.last_prices = {price.symbol: price.price for price in session.scalars(select(MarketPrice))}
        self.exchange = exchange
        return len(exchange.open_orders())

    def on_message(self, frames: list[bytes]) -> bool:
        """Any message on --orders is a wake-up: read the inbox."""
        return True

    def catch_up(self, stopping: Callable[[], bool]) -> None:
        """Handle every pending inbox row in arrival order, until none is left or `stopping()`."""
        drain_rows(self._pending, self._handle, self._fail, stopping, limit=INBOX_BATCH)
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_S
            with self._sessions() as session:
                inbox.prune(session)
                session.commit()

    def _pending(self) -> list[inbox.Item]:
        with self._sessions() as session:
            return inbox.pending(session, INBOX_BATCH)

    def _handle(self, item: inbox.Item) -> None:
        work = Work(Written(SOURCE), [])
        try:
            with self._sessions() as session:
                if not inbox.claim(session, item.id):
                    return  # handled meanwhile: nothing to do twice
                outcome, reason = self.apply(session, commands.decode_body(item.kind, item.body), work)
                if outcome != OUTCOME_DONE:
                    inbox.finish(session, item.id, outcome, reason)
                session.commit()
        except Exception:
            self.restore()  # the exchange may hold changes the rolled-back transaction lost
            raise
        self.handled += 1
        self._committed(work.events.rows())
        self._wake_fills([execution.id for execution in work.fills])

    def _fail(self, item: inbox.Item, exc: Exception) -> None:
        self.failed += 1
        log.error("inbox row %d (%s) failed, recorded and skipped: %s", item.id, item.kind, exc, exc_info=exc)
        inbox.fail(self._sessions, item.id, f"{type(exc).__name__}: {exc}")

    def apply(self, session: Session, command: Command, work: Work) -> tuple[str, str | None]:
        """Apply one command in the session's transaction; its outcome and the reason of a rejection."""
        if isinstance(command, SignalCommand):
            return self.on_signal(session, command, work)
        changes = self.exchange.tick(command.symbol, command.price, command.volume)
        _remember_price(session, command.symbol, command.price)
        by_id = _rows_by_order_id(session, (change.order.order_id for change in changes))
        for change in changes:
            self._record(session, change, by_id[change.order.order_id], work, suppress_toast=False)
        return OUTCOME_DONE, None

    def on_signal(self, session: Session, command: SignalCommand, work: Work) -> tuple[str, str | None]:
        strategy = self._strategy(session, command)
        if strategy is None or not strategy.is_active:
            reason = f"strategy {command.group_name!r} is {'inactive' if strategy else 'unknown'}"
            log.warning("signal refused: %s", reason)
            return OUTCOME_REJECTED, reason
        tally = BatchTally() if command.is_batch else None
        accounts = access.linked_accounts(session, strategy.id)
        for spec in command.orders:
            if spec.order_type == CANCEL_ALL:
                self._cancel_all(session, strategy.id, spec.symbol, work, tally)
                continue
            for account in accounts:
                self._place(session, strategy.id, command.signal_id, spec, account, work, tally)
        for event in tally.events(utc_now()) if tally is not None else ():
            work.events.add(session, event)
        return OUTCOME_DONE, None

    def _strategy(self, session: Session, command: SignalCommand) -> Strategy | None:
        if command.strategy_id is not None:
            return session.get(Strategy, command.strategy_id)
        query = select(Strategy).where(Strategy.group_name == command.group_name)
        return session.scalars(query).one_or_none()

    def _place(
        self, session: Session, strategy_id: int, signal_id: int | None, spec: OrderSpec,
        account: Account, work: Work, tally: BatchTally | None,
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
        self._record(session, change, row, work, suppress_toast=tally is not None)
        if tally is not None and order.status != "REJECTED":
            tally.created(StreamKey(account.user_id, strategy_id), order.order_type)

    def _market_price(self, session: Session, spec: OrderSpec) -> float | None:
        if spec.price is not None:
            return spec.price
        return self.exchange.last_prices.get(spec.symbol) or last_fill_price(session, spec.symbol)

    def _cancel_all(
        self, session: Session, strategy_id: int, symbol: str, work: Work, tally: BatchTally | None
    ) -> None:
        changes = self.exchange.cancel_all(strategy_id, symbol)
        by_id = _rows_by_order_id(session, (change.order.order_id for change in changes))
        for change in changes:
            row = by_id[change.order.order_id]
            self._record(session, change, row, work, suppress_toast=tally is not None)
            if tally is not None:
                tally.cancelled(StreamKey(row.user_id, strategy_id), row.order_type)

    def _record(self, session: Session, change: OrderChange, row: Order, work: Work, *, suppress_toast: bool) -> None:
        """Copy the change into its row, write its events now (while they describe this change) and its fill."""
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
            work.events.add(session, event)
        if change.fill is not None:
            session.flush()  # the execution refers to the order's id
            execution = Execution(
                order_id=row.id, account_id=row.account_id, strategy_id=row.strategy_id, user_id=row.user_id,
                symbol=row.symbol, side=row.side, quantity=change.fill.quantity, price=change.fill.price,
            )
            session.add(execution)
            work.fills.append(execution)


def _remember_price(session: Session, symbol: str, price: float) -> None:
    known = session.get(MarketPrice, symbol)
    if known is None:
        session.add(MarketPrice(symbol=symbol, price=price))
    else:
        known.price = price


def _rows_by_order_id(session: Session, order_ids: Iterable[str]) -> dict[str, Order]:
    wanted = list(order_ids)
    if not wanted:
        return {}
    return {row.order_id: row for row in session.scalars(select(Order).where(Order.order_id.in_(wanted)))}


class FillWakes:
    """Tells the position handler about new executions; never blocks, and a refused wake-up costs one sweep."""

    def __init__(self, endpoint: str) -> None:
        self.publisher = Publisher(endpoint, send_timeout_ms=0, linger_ms=LINGER_MS)
        self.dropped = 0

    def __call__(self, fill_ids: list[int]) -> None:
        for fill_id in fill_ids:
            try:
                self.publisher.send(*commands.fill_wake(fill_id))
            except BusUnavailable:
                self.dropped += 1


def parse_config(argv: list[str] | None) -> tuple[OrdersConfig, str]:
    """Read flags and TRADESTREAM_* variables."""
    parser = SettingsParser(
        OrdersConfig,
        prog="tradestream-orders",
        description="Order handler: applies the signals and price ticks of its inbox to a paper exchange, "
        "stores the orders and fills and sends their events to the broker.",
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
    sessions = make_session_factory(engine)
    wakes = FillWakes(config.fills)
    try:
        relay = Relay(sessions, SOURCE, config.ack_ingress)
        handler = OrderHandler(sessions, relay.offer, wakes)
        resting = handler.restore()
        loop = ProducerLoop(config.orders, handler, relay)
    except Exception as exc:  # a taken port: say so in one line
        log.error("cannot start: %s", exc)
        return 1
    stop_on_signals(loop.stop)
    log.info("orders listening on %s, %d resting orders restored, relaying %s to %s",
             loop.endpoint, resting, relay.stream, config.ack_ingress)
    loop.run()
    wakes.publisher.close()
    log.info("orders stopped: %d commands handled, %d failed; relay %s", handler.handled, handler.failed, relay.window.stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
