"""Prometheus metrics of the webhook process (`GET /metrics` on its HTTP port).

Defined here, one registry per service (tests build several in one process); the
handler calls one hook per answer. Names follow Prometheus' conventions
(`_total` counters), listed in docs/operations.md.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, ProcessCollector

PREFIX = "tradestream_webhook"


class WebhookMetrics:
    """Signals received, accepted (new or duplicate) and refused by error code."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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
