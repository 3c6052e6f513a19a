"""Inbox bodies and fill wake-ups: round trips, and poison bodies refused cleanly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import codec
from producers.commands import (
    Command,
    SignalCommand,
    TickCommand,
    decode_body,
    encode_body,
    fill_wake,
    kind_of,
    parse_fill_wake,
)
from producers.errors import InvalidCommand, InvalidSignal
from producers.signals import OrderSpec, parse_order
from web.jsonbody import InvalidJson, parse_json_body

D = Decimal
COMMANDS = [
    SignalCommand("btc-trend", (OrderSpec("LIMIT", "BTC/USDT", "BUY", D("90000.00"), None, D(5)),), False, 1, 7),
    SignalCommand("eth-swing", (OrderSpec("STOP_LIMIT", "ETH/USDT", "SELL", D("3000.00"), D("2990.00"), D("1.5")), OrderSpec("CANCEL_ALL_ORDER", "ETH/USDT")), True),
    SignalCommand("sol-scalp", (OrderSpec("MARKET", "SOL/USDT", "BUY", None, None, D(2)),)),
    SignalCommand("new-coin", (OrderSpec("LIMIT", "NEW/USDT", "BUY", D("0.000000000123"), None, D("0.00000100000000001")),)),
    TickCommand("BTC/USDT", D("90000.50"), D("0.25000000")),
    TickCommand("BTC/USDT", D("90000.50")),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_command_round_trips_through_its_inbox_body_exactly(command: Command) -> None:
    decoded = decode_body(kind_of(command), encode_body(command))
    assert decoded == command
    assert str(decoded) == str(command)  # the same digits, not only equal numbers


def test_an_old_rows_json_numbers_are_read_by_their_shortest_digits() -> None:
    tick = decode_body("tick", '{"symbol": "BTC/USDT", "price": 90000.5, "volume": 0.1}')
    assert tick == TickCommand("BTC/USDT", D("90000.50"), D("0.10000000"))


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("order", "{}"),
        ("tick", "{"),
        ("tick", "[1, 2]"),
        ("tick", "[" * 100_000),
        ("tick", '{"symbol": "BTC/USDT", "price": -1}'),
        ("tick", '{"symbol": "BTCUSDT", "price": 1}'),
        ("tick", '{"symbol": "BTC/USDT", "price": 1, "volume": "a lot"}'),
        ("signal", '{"group_name": "g", "orders": [], "is_batch": false}'),
        ("signal", '{"group_name": "g", "orders": ["x"], "is_batch": false}'),
        ("signal", '{"group_name": "g", "orders": [{"order_type": "LIMIT"}], "is_batch": false}'),
        ("signal", '{"group_name": 5, "orders": [{"order_type": "CANCEL_ALL_ORDER", "symbol": "A/B"}], "is_batch": false}'),
    ],
)
def test_malformed_bodies_are_invalid_commands(kind: str, body: str) -> None:
    with pytest.raises(InvalidCommand):
        decode_body(kind, body)


def test_fill_wake_names_its_execution_and_other_wake_ups_name_none() -> None:
    assert parse_fill_wake(list(fill_wake(42))) == 42
    assert parse_fill_wake([b"wake", b""]) is None
    for frames in ([b"fill"], [b"fill", b"\xc1"], [b"fill", codec.pack({"fill_id": 0})], [b"fill", codec.pack({"fill_id": "1"})]):
        with pytest.raises(InvalidCommand):
            parse_fill_wake(frames)


_NUMBER_TEXT = st.one_of(
    st.decimals(min_value=Decimal("1e-14"), max_value=Decimal("1e13"), allow_nan=False, allow_infinity=False).map(str),
    # Up to 70 digits scaled near 1: within qty_per's range, and as long as a sender may write them.
    st.builds(lambda digits, shift: f"{digits}e{shift - len(digits)}",
              st.integers(1, 70).flatmap(lambda n: st.text("123456789", min_size=n, max_size=n)), st.integers(-5, 2)),
)


@settings(max_examples=300, deadline=None)
@given(qty_per=_NUMBER_TEXT, order_type=st.sampled_from(["LIMIT", "MARKET", "STOP_LIMIT"]))
def test_every_order_the_webhook_accepts_reads_back_from_its_inbox_body(qty_per: str, order_type: str) -> None:
    body = ('{"symbol": "BTC/USDT", "side": "buy", "order_type": "' + order_type + '", "price": "90000",'
            ' "stop_price": "89000", "qty_per": ' + qty_per + "}")  # qty_per as the JSON number a sender wrote
    try:
        spec = parse_order(parse_json_body(body.encode()))
    except (InvalidSignal, InvalidJson):
        return  # refused at the webhook: a 400, never a row
    command = SignalCommand("btc-trend", (spec,), False, 1, 7)
    assert decode_body(kind_of(command), encode_body(command)) == command  # an accepted signal is never a failed row
