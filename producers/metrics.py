"""Prometheus metrics of the webhook, order and position processes (`GET /metrics`).

Defined here, one registry per service (tests build several in one process);
the code that does the work calls one hook per thing done. The webhook serves
its registry on its HTTP port; orders and positions, which have no HTTP port,
serve theirs on `--metrics-port` (producers/metrics_port.py, the same hardened
server as every listener). Names follow Prometheus' conventions (`_total` counters, `_seconds`
histograms), listed in docs/operations.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bus import codec
from producers.failed_auth import FailedAuthBudget
from producers.relay_window import RelayWindow, Row
from store.columns import utc_now

PREFIX = "tradestream_webhook"
# Inbox row or fill written → handled: from a few ms to a backlog's minutes.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class WebhookMetrics:
    """Signals received, accepted (new or duplicate) and refused by error code; the failed-authentication budget."""

    def __init__(self, budget: FailedAuthBudget) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(AuthBudgetCollector(budget))
        self.received = Counter(
            f"{PREFIX}_signals_received", "Webhook requests answered", registry=self.registry)
        self.accepted = Counter(
            f"{PREFIX}_signals_accepted", "Signals accepted (stored, or a duplicate of a stored one)",
            ["duplicate"], registry=self.registry)
        self.refused = Counter(
            f"{PREFIX}_signals_refused", "Webhook requests refused, by error code (CONTRACT section 5)",
            ["reason"], registry=self.registry)
        ProcessCollector(registry=self.registry)

    def answered(self, error: str | None, duplicate: bool = False) -> None:
        """One hook per answer: `error` is the error code of a refusal, None for an acceptance."""
        self.received.inc()
        if error is None:
            self.accepted.labels(duplicate="true" if duplicate else "false").inc()
        else:
            self.refused.labels(reason=error).inc()


class AuthBudgetCollector(Collector):
    """The failed-authentication budget's counts, read at scrape time (the budget lives on the webhook's loop)."""

    def __init__(self, budget: FailedAuthBudget) -> None:
        self._budget = budget

    def collect(self) -> Iterator[Metric]:
        budget = self._budget
        yield CounterMetricFamily(f"{PREFIX}_auth_failures", "Failed webhook authentications (unknown group, wrong token)",
                                  value=budget.failures)
        yield CounterMetricFamily(f"{PREFIX}_auth_limited",
                                  "Webhook requests refused (429) before any check: their address spent its failure budget",
                                  value=budget.limited)
        yield CounterMetricFamily(f"{PREFIX}_auth_addresses_evicted",
                                  "Addresses dropped from the failure table for room (their budget whole again)",
                                  value=budget.evicted)
        yield GaugeMetricFamily(f"{PREFIX}_auth_tracked_addresses",
                                "Client addresses with failed authentications or checks in flight in their window",
                                value=budget.tracked)
        yield GaugeMetricFamily(f"{PREFIX}_auth_known_senders", "(group, token) pairs known good (they skip the budget)",
                                value=budget.known)


class OutboxCollector(Collector):
    """The relay window's counts, read at scrape time (the relay runs in the process's main loop)."""

    def __init__(self, prefix: str, window: RelayWindow) -> None:
        self._prefix, self._window = prefix, window

    def collect(self) -> Iterator[Metric]:
        stats, p = self._window.stats, self._prefix
        yield CounterMetricFamily(f"{p}_outbox_relayed", "Outbox events the broker confirmed", value=stats.acked)
        yield CounterMetricFamily(f"{p}_outbox_rejected", "Outbox events the broker rejected for good", value=stats.rejected)
        yield CounterMetricFamily(f"{p}_outbox_rewinds", "Times the relay resent from its last confirmed event",
                                  value=stats.rewinds)
        yield GaugeMetricFamily(f"{p}_outbox_pending_events",
                                "Outbox events held by the relay and not confirmed yet (more may wait in the database)",
                                value=self._window.held)


def _seconds_since(moment: datetime) -> float:
    return max(0.0, (utc_now() - moment).total_seconds())


class _HandlerMetrics:
    """What both handlers share: a registry with the process's and the outbox relay's metrics."""

    def __init__(self, prefix: str, window: RelayWindow) -> None:
        self.prefix = prefix
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.registry.register(OutboxCollector(prefix, window))


class OrdersMetrics(_HandlerMetrics):
    """Inbox commands handled or failed, the order events they wrote, inbox → handled latency."""

    def __init__(self, window: RelayWindow) -> None:
        super().__init__("tradestream_orders", window)
        p, r = self.prefix, self.registry
        self.commands = Counter(f"{p}_commands_handled", "Inbox commands handled, by kind (signal, tick)",
                                ["kind"], registry=r)
        self.failed = Counter(f"{p}_commands_failed", "Inbox commands whose handling raised (recorded, skipped)",
                              registry=r)
        self.events = Counter(f"{p}_order_events",
                              "Order events written (one per account's order), by event_type: order_created, "
                              "order_filled, order_cancelled, order_rejected, ...", ["event_type"], registry=r)
        self.latency = Histogram(f"{p}_handling_latency_seconds", "Inbox row written (webhook, replay) → handled",
                                 buckets=LATENCY_BUCKETS_S, registry=r)

    def handled(self, kind: str, received_at: datetime, events: Iterable[Row]) -> None:
        """One hook per inbox row handled (committed)."""
        self.latency.observe(_seconds_since(received_at))
        self.commands.labels(kind=kind).inc()
        for row in events:
            event_type = codec.unpack_map(row.payload).get("event_type")
            if isinstance(event_type, str):
                self.events.labels(event_type=event_type).inc()


class PositionsMetrics(_HandlerMetrics):
    """Fills applied or failed, fill → applied latency."""

    def __init__(self, window: RelayWindow) -> None:
        super().__init__("tradestream_positions", window)
        p, r = self.prefix, self.registry
        self.applied = Counter(f"{p}_fills_applied", "Fills (executions) applied to their position", registry=r)
        self.failed = Counter(f"{p}_fills_failed", "Fills whose application raised (recorded, skipped)", registry=r)
        self.latency = Histogram(f"{p}_fill_latency_seconds", "Fill written (order handler) → applied",
                                 buckets=LATENCY_BUCKETS_S, registry=r)

    def fill_applied(self, executed_at: datetime) -> None:
        """One hook per fill applied (committed)."""
        self.latency.observe(_seconds_since(executed_at))
        self.applied.inc()
