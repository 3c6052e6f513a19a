"""tradestream-orders: applies the inbox's signals and ticks to the paper exchange.

    order_inbox row ─▶ SignalCommand / TickCommand ─▶ PaperExchange
        ─▶ Order rows · Execution rows · outbox events · inbox row handled ─▶ ONE commit
        ─▶ relay ─▶ broker (acknowledged ingress)       ─▶ PUSH [fill, id] --fills ─▶ positions (a wake-up;
                                                           a tick without fills: [wake], to re-mark positions)

The inbox is read at start, on every wake-up on --orders and every sweep
(pull_loop.py), oldest row first; each row is claimed, applied (trading.py) and
marked in one transaction, with its events in the outbox, so a signal the
webhook stored is handled exactly once whichever process dies, none of its
events is lost, and a reader of the REST snapshot never sees an event ahead of
its row. A row that raises is recorded `failed` with its error and skipped. The
exchange's state (resting orders, last tick per symbol) is in the database too:
a restarted handler restores it.

The exchange in memory changes as a command is applied, before its commit: from
then until that commit succeeds it is `stale` (it may hold changes the database
lost), as it is at start. No command is applied to a stale exchange: the next
one first rebuilds it from the database (`restore`), and while that fails (the
database still down) the row waits, pending, instead of being decided on
changes that were never stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from bus import endpoints, kinds
from bus.errors import BusUnavailable
from bus.process import (
    SettingsParser,
    configure_logging,
    exit_on_stop_signals_while_starting,
    metrics_port_setting,
    setting,
    stop_on_signals,
)
from bus.publisher import Publisher
from bus.security import bus_keys_setting
from producers import commands, inbox
from producers.errors import NotRestored
from producers.exchange import PaperExchange
from producers.metrics import OrdersMetrics
from producers.metrics_port import serve
from producers.outbox import Written
from producers.pull_loop import LINGER_MS, ProducerLoop, drain_rows
from producers.relay import Relay
from producers.relay_window import Row
from producers.startup import open_store
from producers.trading import Trader, Work
from store.db import DEFAULT_DATABASE_URL, sqlalchemy_url
from store.handoff import OUTCOME_DONE

log = logging.getLogger(__name__)

SOURCE = "orders"
INBOX_BATCH = 100
PRUNE_S = 60.0


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
    bus_keys: str = bus_keys_setting()
    metrics_port: int | None = metrics_port_setting()


class OrderHandler:
    """Applies inbox commands to the exchange and the database; hands on what each commit wrote."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        committed: Callable[[list[Row]], None],
        wake_fills: Callable[[list[int]], None],
        metrics: OrdersMetrics | None = None,
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._committed = committed
        self._wake_fills = wake_fills
        self.trader = Trader()
        self.stale = True  # the exchange is not known to match the database (module docstring)
        self.handled = 0
        self.failed = 0
        self._next_prune = time.monotonic() + PRUNE_S

    def restore(self) -> int:
        """Load the resting orders and last prices from the database into a fresh exchange; how many orders."""
        with self._sessions() as session:
            self.trader = Trader.restored(session)
        self.stale = False
        return len(self.exchange.open_orders())

    @property
    def exchange(self) -> PaperExchange:
        return self.trader.exchange

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
        if self.stale:
            self._restore_before(item)
        work = Work(Written(SOURCE), [])
        with self._sessions() as session:
            if not inbox.claim(session, item.id):
                return  # handled meanwhile: nothing to do twice
            command = commands.decode_body(item.kind, item.body)
            self.stale = True  # until the commit: the exchange may hold changes the database will not
            outcome, reason = self.trader.apply(session, command, work)
            if outcome != OUTCOME_DONE:
                inbox.finish(session, item.id, outcome, reason)
            session.commit()
        self.stale = False
        self.handled += 1
        events = work.events.rows()
        if self._metrics is not None:
            self._metrics.handled(item.kind, item.received_at, events)
        self._committed(events)
        if work.fills or isinstance(command, commands.TickCommand):
            # No fill but a tick: an empty list wakes the position handler to re-mark (positions.py).
            self._wake_fills([execution.id for execution in work.fills])

    def _restore_before(self, item: inbox.Item) -> None:
        """Rebuild the exchange from the database; failing that, the row is not handled (and not its fault)."""
        try:
            self.restore()
        except Exception as exc:
            raise NotRestored(f"the exchange cannot be restored before inbox row {item.id}: {exc}") from exc

    def _fail(self, item: inbox.Item, exc: Exception) -> None:
        self.failed += 1
        if self._metrics is not None:
            self._metrics.failed.inc()
        log.error("inbox row %d (%s) failed, recorded and skipped: %s", item.id, item.kind, exc, exc_info=exc)
        inbox.fail(self._sessions, item.id, f"{type(exc).__name__}: {exc}")


class FillWakes:
    """Tells the position handler about new executions; never blocks, and a refused wake-up costs one sweep."""

    def __init__(self, endpoint: str) -> None:
        self.publisher = Publisher(endpoint, send_timeout_ms=0, linger_ms=LINGER_MS)
        self.dropped = 0

    def __call__(self, fill_ids: list[int]) -> None:
        """A wake-up per fill; none: one plain wake-up (a new price to mark positions at)."""
        frames = [commands.fill_wake(fill_id) for fill_id in fill_ids] or [commands.WAKE]
        for frame in frames:
            try:
                self.publisher.send(*frame)
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
    exit_on_stop_signals_while_starting()
    store = open_store(
        config.bus_keys, config.database_url, SOURCE, binds=(config.orders,), connects=(config.ack_ingress, config.fills)
    )
    if store is None:
        return 1
    sessions, writer = store.sessions, store.writer
    wakes = FillWakes(config.fills)
    try:
        relay = Relay(sessions, SOURCE, config.ack_ingress)
        metrics = OrdersMetrics(relay.window)
        handler = OrderHandler(sessions, relay.offer, wakes, metrics)
        resting = handler.restore()
        loop = ProducerLoop(config.orders, handler, relay, writer=writer)
        metrics_at = "off" if config.metrics_port is None else str(serve(metrics.registry, config.metrics_port))
    except Exception as exc:  # a taken port: say so in one line
        log.error("cannot start: %s", exc)
        return 1
    stop_on_signals(loop.stop)
    log.info("orders listening on %s, %d resting orders restored, relaying %s to %s, metrics port %s",
             loop.endpoint, resting, relay.stream, config.ack_ingress, metrics_at)
    loop.run()
    wakes.publisher.close()
    writer.close()
    log.info("orders stopped: %d commands handled, %d failed; relay %s", handler.handled, handler.failed, relay.window.stats)
    return 1 if loop.writer_lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
