"""docs/operations.md's metrics table names exactly the tradestream_* metrics every process exports."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from producers.failed_auth import FailedAuthBudget
from producers.metrics import OrdersMetrics, PositionsMetrics, WebhookMetrics
from producers.relay_window import RelayWindow
from streamer.services import Services

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
TYPES = {"counter", "gauge", "histogram"}


def documented() -> set[tuple[str, str]]:
    """(name, type) of every metric in the Metrics section's table; a row may name several."""
    section = OPERATIONS.read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    found = set()
    for names, kind in re.findall(r"^\| (`tradestream_[^|]+) \| (\w+) \|", section, re.MULTILINE):
        assert kind in TYPES, kind
        found |= {(name, kind) for name in re.findall(r"`(tradestream_\w+)`", names)}
    return found


def exported(registry: CollectorRegistry) -> set[tuple[str, str]]:
    """(name as scraped, type) of the registry's tradestream_* families (counters with their `_total`)."""
    return {
        (family.name + ("_total" if family.type == "counter" else ""), family.type)
        for family in registry.collect()
        if family.name.startswith("tradestream_")
    }


def test_the_metrics_table_lists_every_metric_of_every_process(services: Services) -> None:
    window = RelayWindow(0)
    registries = [WebhookMetrics(FailedAuthBudget()).registry, OrdersMetrics(window).registry, PositionsMetrics(window).registry,
                  services.registry]
    actual = set().union(*(exported(registry) for registry in registries))
    assert documented() == actual
