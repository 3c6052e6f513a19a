"""Inbox bodies and fill wake-ups: round trips, and poison bodies refused cleanly."""

from __future__ import annotations

import pytest

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
from producers.errors import InvalidCommand
from producers.signals import OrderSpec

COMMANDS = [
    SignalCommand("btc-trend", (OrderSpec("LIMIT", "BTC/USDT", "BUY", 90000.0, None, 5.0),), False, 1, 7),
    SignalCommand("eth-swing", (OrderSpec("STOP_LIMIT", "ETH/USDT", "SELL", 3000.0, 2990.0, 1.5), OrderSpec("CANCEL_ALL_ORDER", "ETH/USDT")), True),
    SignalCommand("sol-scalp", (OrderSpec("MARKET", "SOL/USDT", "BUY", None, None, 2.0),)),
    SignalCommand("sol-scalp", (OrderSpec("LIMIT", "SOL/USDT", "BUY", 0.1 + 0.2, None, 1e-6 + 1e-17),)),
    TickCommand("BTC/USDT", 90000.5, 0.25),
    TickCommand("BTC/USDT", 90000.5),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_command_round_trips_through_its_inbox_body_exactly(command: Command) -> None:
    assert decode_body(kind_of(command), encode_body(command)) == command


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
