"""Hypothesis strategies that build valid bus messages of every kind."""

from __future__ import annotations

from datetime import UTC

from hypothesis import strategies as st

from bus import decimals, events
from bus.topics import MAX_ID, StreamKey

ids = st.integers(min_value=1, max_value=MAX_ID)
keys = st.builds(StreamKey, ids, ids)
texts = st.text(min_size=1, max_size=events.MAX_TEXT)
numbers = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**63), 2**63 - 1))
# Quantities, prices and money: decimal strings of the wire format (bus/decimals.py), any digits it allows.
amounts = st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**23), max_value=10**23, places=12).map(decimals.text)
optional_amounts = st.one_of(st.none(), amounts)
timestamps = st.datetimes(timezones=st.just(UTC)).map(events.format_timestamp)
accounts = st.builds(events.Account, ids, texts, texts)


def choice(values: frozenset[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(values))


order_events = st.builds(
    events.OrderEvent,
    event_type=choice(events.ORDER_EVENT_TYPES),
    order_id=texts,
    symbol=texts,
    strategy_id=ids,
    user_id=ids,
    side=choice(events.SIDES),
    quantity=amounts,
    price=optional_amounts,
    status=choice(events.ORDER_STATUSES),
    timestamp=timestamps,
    order_type=choice(events.ORDER_TYPES),
    stop_price=optional_amounts,
    account=accounts,
    suppress_toast=st.booleans(),
    filled_quantity=optional_amounts,
    average_price=optional_amounts,
)
position_events = st.builds(
    events.PositionEvent,
    event_type=choice(events.POSITION_EVENT_TYPES),
    position_id=ids,
    symbol=texts,
    strategy_id=ids,
    user_id=ids,
    quantity=amounts,
    entry_price=optional_amounts,
    timestamp=timestamps,
    previous_quantity=optional_amounts,
    account=accounts,
    account_name=texts,
    exchange=texts,
)
counts = st.integers(min_value=0, max_value=10_000)
summaries = st.builds(events.BatchSummary, choice(events.ORDER_TYPES), counts, counts).filter(
    lambda s: s.created or s.cancelled
)
batch_events = st.builds(
    events.OrderBatchEvent,
    summaries=st.lists(summaries, min_size=1, max_size=16).map(tuple),
    strategy_id=ids,
    user_id=ids,
    timestamp=timestamps,
)
reasons = choice(events.DISCONNECT_REASONS)
control_messages = st.one_of(
    st.builds(events.DisconnectMessage, ids, ids, reasons, texts),
    st.builds(events.CleanupStrategyMessage, ids, reasons, texts),
)
every_message = st.one_of(order_events, position_events, batch_events, control_messages)

# Anything msgpack can carry: what a confused or hostile producer might send.
wire_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20), st.binary(max_size=20)),
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
