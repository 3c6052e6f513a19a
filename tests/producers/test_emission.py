"""Smart order emission (CONTRACT §4) for every status transition, and batch summaries."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.events import from_wire
from bus.topics import StreamKey
from producers.emission import SUMMARY_ORDER, BatchTally, Emission, emit_order_events_smart
from producers.exchange import Fill, OrderChange, PaperOrder

NEW = None  # previous_filled of an order that did not exist before
TIMESTAMP = "2025-01-06T09:30:00.000000Z"


def change(order_type: str, status: str, filled: float, previous: float | None) -> OrderChange:
    """An order change as the exchange makes it: a Fill of what this change filled (at 100), if anything."""
    now = Decimal(str(filled))
    before = None if previous is None else Decimal(str(previous))
    hundred = Decimal(100)
    order = PaperOrder("o-1", 1, 1, "BTC/USDT", "BUY", order_type, Decimal(10), hundred, None, status, now, hundred if filled else None)
    newly = now - (before or 0)
    return OrderChange(order, before, Fill(newly, hundred) if newly > 0 else None)


def filled_by(quantity: float) -> Emission:
    return Emission("order_filled", Fill(Decimal(str(quantity)), Decimal(100)))


EMISSIONS = [
    # order_type, status, filled now, filled before (None: new order), expected
    ("MARKET", "FILLED", 10.0, NEW, [filled_by(10.0)]),
    ("MARKET", "PARTIALLY_FILLED", 4.0, NEW, [filled_by(4.0)]),
    ("MARKET", "FILLED", 10.0, 4.0, [filled_by(6.0)]),
    ("MARKET", "REJECTED", 0.0, NEW, [Emission("order_cancelled")]),
    ("LIMIT", "NEW", 0.0, NEW, [Emission("order_created")]),
    ("LIMIT", "OPEN", 0.0, NEW, [Emission("order_created")]),
    ("LIMIT", "OPEN", 0.0, 0.0, [Emission("order_updated")]),
    ("STOP_LIMIT", "NEW", 0.0, NEW, [Emission("order_created")]),
    ("STOP_LIMIT", "TRIGGERED", 0.0, 0.0, [Emission("order_updated")]),
    ("STOP_MARKET", "TRIGGERED", 0.0, 0.0, [Emission("order_updated")]),
    ("LIMIT", "PARTIALLY_FILLED", 4.0, NEW, [Emission("order_created"), filled_by(4.0)]),
    ("LIMIT", "PARTIALLY_FILLED", 4.0, 0.0, [Emission("order_updated"), filled_by(4.0)]),
    ("LIMIT", "PARTIALLY_FILLED", 7.0, 4.0, [Emission("order_updated"), filled_by(3.0)]),
    ("STOP_MARKET", "PARTIALLY_FILLED", 2.5, 0.0, [Emission("order_updated"), filled_by(2.5)]),
    ("LIMIT", "FILLED", 10.0, 0.0, [filled_by(10.0)]),
    ("LIMIT", "FILLED", 10.0, 7.0, [filled_by(3.0)]),
    ("LIMIT", "FILLED", 10.0, NEW, [filled_by(10.0)]),
    ("STOP_LIMIT", "FILLED", 10.0, 6.0, [filled_by(4.0)]),
    ("LIMIT", "FILLED", 10.0, 10.0, []),
    ("LIMIT", "CANCELLED", 0.0, 0.0, [Emission("order_cancelled")]),
    ("LIMIT", "CANCELLED", 4.0, 4.0, [Emission("order_cancelled")]),
    ("STOP_MARKET", "CANCELLED", 0.0, 0.0, [Emission("order_cancelled")]),
    ("LIMIT", "REJECTED", 0.0, NEW, [Emission("order_cancelled")]),
]


@pytest.mark.parametrize(
    ("order_type", "status", "filled", "previous", "expected"),
    [pytest.param(*case, id=f"{case[0]}-{case[1]}-{'new' if case[3] is None else 'known'}-{case[2]}") for case in EMISSIONS],
)
def test_emission_follows_the_contract_table(
    order_type: str, status: str, filled: float, previous: float | None, expected: list[Emission]
) -> None:
    emissions = emit_order_events_smart(change(order_type, status, filled, previous))
    assert emissions == expected
    # The fill's own size and price, and only on order_filled: `quantity` stays the order's (store/rows.py).
    for emission in emissions:
        assert (emission.fill_quantity is None) == (emission.event_type != "order_filled")
        assert (emission.fill_price is None) == (emission.event_type != "order_filled")


ORDER_TYPES = st.sampled_from(SUMMARY_ORDER)
KEYS = st.builds(StreamKey, st.integers(1, 4), st.integers(1, 3))
RECORDS = st.lists(st.tuples(KEYS, ORDER_TYPES, st.booleans()), max_size=60)


def tally_of(records: list[tuple[StreamKey, str, bool]]) -> BatchTally:
    tally = BatchTally()
    for key, order_type, created in records:
        (tally.created if created else tally.cancelled)(key, order_type)
    return tally


@given(RECORDS)
def test_batch_summary_counts_every_record_once_per_key_and_type(records: list[tuple[StreamKey, str, bool]]) -> None:
    events = tally_of(records).events(TIMESTAMP)
    counted = Counter(
        (StreamKey(e.user_id, e.strategy_id), s.order_type, kind)
        for e in events for s in e.summaries for kind in ("created", "cancelled") for _ in range(getattr(s, kind))
    )
    expected = Counter((key, order_type, "created" if created else "cancelled") for key, order_type, created in records)
    assert counted == expected


@given(RECORDS)
def test_batch_summary_has_one_event_per_key_no_zero_rows_and_stable_type_order(
    records: list[tuple[StreamKey, str, bool]],
) -> None:
    events = tally_of(records).events(TIMESTAMP)
    keys = [StreamKey(e.user_id, e.strategy_id) for e in events]
    assert keys == list(dict.fromkeys(key for key, _, _ in records))
    for event in events:
        types = [s.order_type for s in event.summaries]
        assert types == [t for t in SUMMARY_ORDER if t in types]
        assert all(s.created or s.cancelled for s in event.summaries)
        assert from_wire(event.to_wire()) == event  # valid on the bus, not only in memory


def test_empty_batch_sends_nothing() -> None:
    assert BatchTally().events(TIMESTAMP) == []


def test_cancellations_count_under_each_cancelled_orders_own_type() -> None:
    tally = BatchTally()
    key = StreamKey(1, 1)
    tally.created(key, "STOP_MARKET")
    tally.cancelled(key, "LIMIT")
    tally.cancelled(key, "STOP_MARKET")
    (event,) = tally.events(TIMESTAMP)
    assert [(s.order_type, s.created, s.cancelled) for s in event.summaries] == [("LIMIT", 0, 1), ("STOP_MARKET", 1, 1)]
