"""The webhook's database side: who is signalling, may they, and the Signal row. Blocking.

The webhook runs `Intake.accept` in a thread pool, never on its IOLoop. It
performs the contract's checks that need the database, in order: group (404),
token (401, compared in constant time by store.auth), strategy active (409),
then fields (400: the pure validation's result, and a MARKET order's price,
which may come from the last tick or fill in the database). Then it stores the
Signal and its command in the order handler's inbox, in one transaction: that
commit is the acceptance (the 200), and the order handler handles the command
exactly once whenever it runs.

Idempotency: a signal with an `id` is stored under (strategy, id). The same id
again within IDEMPOTENCY_WINDOW is a duplicate: acknowledged, no new orders
(the original is in the inbox, so nothing is lost). An older row with that id
is reused for the new signal (the pair is unique), with a new inbox row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import orjson
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from producers import inbox
from producers.commands import SignalCommand
from producers.errors import InvalidSignal, StrategyInactive, UnknownGroup, WrongToken
from producers.prices import last_known_price
from producers.signals import Envelope, OrderSpec
from store.auth import check_webhook_token
from store.columns import utc_now
from store.models import Signal, Strategy

IDEMPOTENCY_WINDOW = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A signal the strategy took: its row id, and whether it repeats an earlier one."""

    strategy_id: int
    signal_id: int
    duplicate: bool = False


class Intake:
    """Strategy checks and Signal rows; every method is blocking."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    def accept(
        self,
        envelope: Envelope,
        orders: tuple[OrderSpec, ...],
        field_error: InvalidSignal | None,
        payload: str,
    ) -> Accepted:
        """Check the strategy, then the fields, then store the Signal.

        `field_error` is what the pure validation found, raised only after the
        strategy checks. Raises SignalRefused or InvalidSignal.
        """
        with self._sessions() as session:
            strategy = self._strategy(session, envelope)
            if field_error is not None:
                raise field_error
            _check_market_prices(session, orders, envelope.is_batch)
            command = SignalCommand(envelope.group_name, orders, envelope.is_batch, strategy.id)
            if envelope.client_id is None:
                return self._store_new(session, command, None, payload)
            return self._store_once(session, strategy.id, command, envelope.client_id, payload)

    def _strategy(self, session: Session, envelope: Envelope) -> Strategy:
        query = select(Strategy).where(Strategy.group_name == envelope.group_name)
        strategy = session.scalars(query).one_or_none()
        if strategy is None:
            raise UnknownGroup(f"group_name: no strategy {envelope.group_name!r}")
        if not check_webhook_token(strategy, envelope.token):
            raise WrongToken("token: wrong webhook token for this group")
        if not strategy.is_active:
            raise StrategyInactive(f"strategy {envelope.group_name!r} is inactive")
        return strategy

    def _store_new(self, session: Session, command: SignalCommand, client_id: str | None, payload: str) -> Accepted:
        signal = Signal(strategy_id=command.strategy_id, client_id=client_id, payload=payload, received_at=self._clock())
        session.add(signal)
        session.flush()
        return self._enqueue(session, command, signal)

    def _store_once(
        self, session: Session, strategy_id: int, command: SignalCommand, client_id: str, payload: str
    ) -> Accepted:
        query = select(Signal).where(Signal.strategy_id == strategy_id, Signal.client_id == client_id)
        earlier = session.scalars(query).one_or_none()
        now = self._clock()
        if earlier is not None and now - earlier.received_at < IDEMPOTENCY_WINDOW:
            return Accepted(strategy_id, earlier.id, duplicate=True)
        if earlier is not None:
            # Reused only if nobody reused it since we read it: two retries racing (each read the old
            # row) must place the orders once, so the second finds its condition false: a duplicate.
            reused = session.execute(
                update(Signal)
                .where(Signal.id == earlier.id, Signal.received_at == earlier.received_at)
                .values(payload=payload, received_at=now)
                .execution_options(synchronize_session=False)
            )
            if reused.rowcount != 1:  # type: ignore[attr-defined]  # a CursorResult's
                session.rollback()
                return Accepted(strategy_id, earlier.id, duplicate=True)
            return self._enqueue(session, command, earlier)
        try:
            return self._store_new(session, command, client_id, payload)
        except IntegrityError:  # the same id arrived concurrently and won the insert
            session.rollback()
            return Accepted(strategy_id, session.scalars(query).one().id, duplicate=True)

    def _enqueue(self, session: Session, command: SignalCommand, signal: Signal) -> Accepted:
        """The signal's command into the inbox, committed with the Signal row: the acceptance."""
        inbox.put(session, dataclasses.replace(command, signal_id=signal.id), signal.id)
        session.commit()
        return Accepted(signal.strategy_id, signal.id)


def _check_market_prices(session: Session, orders: tuple[OrderSpec, ...], is_batch: bool) -> None:
    """A MARKET order needs a price: its own, or a last price known for its symbol."""
    known: dict[str, Decimal | None] = {}
    for index, order in enumerate(orders):
        if order.order_type != "MARKET" or order.price is not None:
            continue
        if order.symbol not in known:
            known[order.symbol] = last_known_price(session, order.symbol)
        if known[order.symbol] is None:
            field = f"orders[{index}].price" if is_batch else "price"
            raise InvalidSignal(field, f"required for a MARKET order: no last price is known for {order.symbol}")


def payload_text(body: object) -> str:
    """The JSON text stored in a Signal row (the token left out: only its hash is ever kept)."""
    if isinstance(body, dict):
        body = {key: value for key, value in body.items() if key != "token"}
    # web/jsonbody.py read it: its integers fit 64 bits and its strings are UTF-8, as orjson requires;
    # its other numbers are Decimals, kept as their digits (a string: orjson writes no raw number).
    return orjson.dumps(body, default=_decimal_text).decode()


def _decimal_text(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
