"""One command applied to the paper exchange and its rows, in the caller's transaction. Blocking.

    SignalCommand ─▶ Order rows (one per linked account, list order for a batch) ─┐
    TickCommand ──▶ fills of resting orders, the symbol's last price ──────────────┼─▶ events + executions (Work)

A signal is applied to every account linked to its strategy, in list order for
a batch; each order is sized as `qty_per` percent of the account's capital at
the order's price (MARKET: the signal's price, else the last tick, else the
last fill in the database; none of them: REJECTED), rounded down to the
symbol's quantity step (store/money.py): exact Decimals throughout. Events are built as each
change happens (an order created and cancelled by the same batch yields both);
the caller writes them with the rows and commits (orders.py). The exchange in
memory changes as it goes: until the transaction commits, the caller counts it
stale and rebuilds it from the database before the next command
(`OrderHandler.stale`, `OrderHandler.restore`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from bus.events import utc_now
from bus.topics import StreamKey
from producers.commands import Command, SignalCommand
from producers.emission import BatchTally, emit_order_events_smart
from producers.exchange import RESTING, OrderChange, PaperExchange, PaperOrder
from producers.outbox import Written
from producers.prices import last_fill_price
from producers.signals import CANCEL_ALL, OrderSpec
from store import access, rows
from store.columns import Money
from store.columns import utc_now as utc_moment
from store.handoff import OUTCOME_DONE, OUTCOME_REJECTED, Execution
from store.models import Account, MarketPrice, Order, Strategy
from store.money import CONTEXT, ZERO, steps_of

log = logging.getLogger(__name__)

PAPER_FIELDS = ("order_id", "strategy_id", "account_id", "symbol", "side", "order_type",
                "quantity", "price", "stop_price", "status", "filled_quantity", "average_price")


@dataclass(slots=True)
class Work:
    """What one command's transaction writes besides its orders: events and fills, known after the commit."""

    events: Written
    fills: list[Execution]


def order_quantity(symbol: str, capital: Money, qty_per: Decimal, price: Money | None) -> Money | None:
    """`qty_per` percent of `capital` at `price`, rounded down to the symbol's step; None when that is 0."""
    if price is None or price <= 0:
        return None
    spend = CONTEXT.divide(CONTEXT.multiply(capital, qty_per), 100)
    quantity = steps_of(symbol).round_quantity(CONTEXT.divide(spend, price))
    return quantity if quantity > 0 else None


def new_order_id() -> str:
    """A paper exchange order id, unique across restarts."""
    return "paper-" + uuid.uuid4().hex


def paper_order(row: Order) -> PaperOrder:
    """The exchange's view of an Order row."""
    return PaperOrder(**{name: getattr(row, name) for name in PAPER_FIELDS})


class Trader:
    """The paper exchange and the rows its changes make."""

    def __init__(self, exchange: PaperExchange | None = None) -> None:
        self.exchange = exchange or PaperExchange()

    @classmethod
    def restored(cls, session: Session) -> Trader:
        """A trader whose exchange holds the database's resting orders and last tick prices."""
        exchange = PaperExchange()
        for row in session.scalars(select(Order).where(Order.status.in_(RESTING)).order_by(Order.id)):
            exchange.restore(paper_order(row))
        exchange.last_prices = {price.symbol: price.price for price in session.scalars(select(MarketPrice))}
        return cls(exchange)

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
        quantity = order_quantity(spec.symbol, account.capital, spec.qty_per or ZERO, spec.sizing_price or market)
        order = PaperOrder(
            new_order_id(), strategy_id, account.id, spec.symbol, spec.side or "BUY",
            spec.order_type, quantity or ZERO, spec.price, spec.stop_price,
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

    def _market_price(self, session: Session, spec: OrderSpec) -> Decimal | None:
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
        for name in PAPER_FIELDS:
            setattr(row, name, getattr(change.order, name))
        row.updated_at = utc_moment()
        account = session.get(Account, row.account_id)
        if account is None:
            raise LookupError(f"account {row.account_id} of order {row.order_id} is gone")
        for emission in emit_order_events_smart(change):
            event = rows.order_event(
                row, account, emission.event_type, suppress_toast=suppress_toast,
                fill_quantity=emission.fill_quantity, fill_price=emission.fill_price,
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


def _remember_price(session: Session, symbol: str, price: Decimal) -> None:
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


